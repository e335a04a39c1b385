/* A stand-in for Windows' bcryptprimitives.dll, which Wine 8.0 lacks: Rust's
   standard library (1.78 and later) imports ProcessPrng from it for random
   bytes, so without it every Rust program exits at load with status 53.
   This one asks RtlGenRandom (advapi32's SystemFunction036), which Wine
   has. Built and put in the Wine prefix's system32 by .ci/windows. */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
