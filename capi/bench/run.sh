#!/usr/bin/env bash
# Builds capi/bench/closures.c against the release static library and the
# system's libffi (Debian's libffi-dev, .ci/install) and runs it: wxthunk's
# C thunks beside libffi's closures in one run. Usage: capi/bench/run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f /usr/include/ffi.h ] || [ -f /usr/include/x86_64-linux-gnu/ffi.h ] ||
    { echo "SKIPPED: no libffi-dev (ffi.h)"; exit 0; }
cargo build -q --release -p wxthunk-c
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -std=c11 -O2 -Wall -Werror -Wno-cast-function-type -Icapi/include capi/bench/closures.c \
    target/release/libwxthunk_c.a -lffi -lpthread -ldl -lm -o "$out/closures"
"$out/closures" "$@"
