#!/usr/bin/env bash
# Builds the C API in release mode and installs it under a prefix, in the
# layout cargo-c would give (without needing cargo-c: this is the one
# script CI and users run):
#   PREFIX/include/wxthunk.h, wxthunk.hpp
#   LIBDIR/libwxthunk.a                       the static library
#   LIBDIR/libwxthunk.so.X.Y.Z                the shared library, with
#   LIBDIR/libwxthunk.so.SONAME -> ...        its soname (0.<minor> before 1.0)
#   LIBDIR/libwxthunk.so -> ...               for -lwxthunk
#   LIBDIR/pkgconfig/wxthunk.pc               pkg-config's description
# Linux and other ELF systems. Usage:
#   capi/install.sh [--prefix DIR] [--libdir DIR] [--destdir DIR] [--target TRIPLE]
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
libdir=
destdir=
target=()
while [ $# -gt 0 ]; do
    case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --libdir) libdir=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --target) target=(--target "$2"); shift 2 ;;
    *) echo "usage: $0 [--prefix DIR] [--libdir DIR] [--destdir DIR] [--target TRIPLE]" >&2; exit 2 ;;
    esac
done
libdir=${libdir:-$prefix/lib}
includedir=$prefix/include

# With the soname of the installed name (capi/build.rs).
export WXTHUNK_C_SONAME=1
cargo build --release -p wxthunk-c "${target[@]}"
out=target/${target[1]:-}/release
out=${out/\/\//\/}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' capi/Cargo.toml | head -1)
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
if [ "$major" = 0 ]; then soversion=0.$minor; else soversion=$major; fi
# What Rust's standard library needs of the system when linked statically.
private=$(cargo rustc -q --release -p wxthunk-c "${target[@]}" --lib --crate-type staticlib \
    -- --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -1)

install -d "$destdir$includedir" "$destdir$libdir/pkgconfig"
install -m 644 capi/include/wxthunk.h capi/include/wxthunk.hpp "$destdir$includedir/"
install -m 644 "$out/libwxthunk_c.a" "$destdir$libdir/libwxthunk.a"
install -m 755 "$out/libwxthunk_c.so" "$destdir$libdir/libwxthunk.so.$version"
ln -sf "libwxthunk.so.$version" "$destdir$libdir/libwxthunk.so.$soversion"
ln -sf "libwxthunk.so.$soversion" "$destdir$libdir/libwxthunk.so"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" -e "s|@PRIVATE_LIBS@|$private|" \
    capi/wxthunk.pc.in >"$destdir$libdir/pkgconfig/wxthunk.pc"
echo "installed wxthunk $version (soname libwxthunk.so.$soversion) under $destdir$prefix"
