/* A tiny JIT: machine code for `x * k` written into a block, sealed
 * (read+execute, never writable meanwhile), called, then rewritten at the
 * same address for another k. x86_64 and AArch64. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "wxthunk.h"

/* The code of `int f(int x) { return x * k; }`. */
static size_t times_k(unsigned char *buf, int16_t k) {
#if defined(__x86_64__) || defined(_M_X64)
#ifdef _WIN32
    const unsigned char code[] = {0x69, 0xc1, 0, 0, 0, 0, 0xc3}; /* imul eax, ecx, k; ret */
#else
    const unsigned char code[] = {0x69, 0xc7, 0, 0, 0, 0, 0xc3}; /* imul eax, edi, k; ret */
#endif
    int32_t k32 = k;
    memcpy(buf, code, sizeof code);
    memcpy(buf + 2, &k32, 4);
    return sizeof code;
#elif defined(__aarch64__)
    /* movz w1, #k; or for k < 0, movn w1, #~k (w1 = ~~k) */
    uint32_t mov = k >= 0 ? 0x52800001u | ((uint32_t)k << 5)
                          : 0x12800001u | ((uint32_t)(uint16_t)~k << 5);
    const uint32_t code[] = {mov, 0x1b017c00u /* mul w0, w0, w1 */, 0xd65f03c0u /* ret */};
    memcpy(buf, code, sizeof code);
    return sizeof code;
#else
#error "this example has code for x86_64 and AArch64"
#endif
}

#define TRY(call)                                                                      \
    do {                                                                               \
        wx_status st_ = (call);                                                        \
        if (st_ != WX_OK) {                                                            \
            fprintf(stderr, "%s: %s: %s\n", #call, wx_status_name(st_), wx_last_error()); \
            return 1;                                                                  \
        }                                                                              \
    } while (0)

int main(void) {
    unsigned char code[16];
    wx_block *b = NULL;
    TRY(wx_block_new(sizeof code, &b));
    TRY(wx_block_write(b, code, times_k(code, 3)));
    TRY(wx_block_exec(b));
    int (*f)(int) = (int (*)(int))wx_block_code(b, 0);
    int first = f(14);
    printf("x * 3 at %p: f(14) = %d\n", (void *)f, first);
    if (first != 42) return 1;
    /* Re-JIT: writable again (nothing runs it meanwhile), rewritten, sealed. */
    TRY(wx_block_writable(b));
    TRY(wx_block_set_len(b, 0));
    TRY(wx_block_write(b, code, times_k(code, -2)));
    TRY(wx_block_exec(b));
    int (*g)(int) = (int (*)(int))wx_block_code(b, 0);
    printf("x * -2 at %p (the same address: %s): g(21) = %d\n", (void *)g, f == g ? "yes" : "no",
           g(21));
    int ok = f(14) == -28 && g(21) == -42 && f == g;
    wx_block_free(b);
    return ok ? 0 : 1;
}
