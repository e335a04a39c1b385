/* The C API's contract: every bad input is an error with a message and
 * loses nothing; blocks, spans, heaps and thunks behave as the header
 * says. With `--probe`, prints the probe's JSON (the test harness reads
 * it to see which lockdown the process is in). */
#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "threads.h"

static intptr_t add_ctx(intptr_t x, void *ctx) { return x + (intptr_t)ctx; }
static void *echo_ctx(void *ctx) { return ctx; }

/* The machine code of `return value;` (int), for blocks and spans, with
 * the landing pad indirect calls need on guarded pages. */
static size_t ret_code(unsigned char *buf, uint16_t value) {
#if defined(__x86_64__) || defined(_M_X64)
    static const unsigned char endbr64[] = {0xf3, 0x0f, 0x1e, 0xfa};
    memcpy(buf, endbr64, 4);
    buf[4] = 0xb8; /* mov eax, imm32 */
    buf[5] = (unsigned char)value;
    buf[6] = (unsigned char)(value >> 8);
    buf[7] = 0;
    buf[8] = 0;
    buf[9] = 0xc3; /* ret */
    return 10;
#elif defined(__aarch64__)
    uint32_t insns[3] = {0xd503245f, /* bti c */
                         0x52800000u | ((uint32_t)value << 5), /* movz w0, #value */
                         0xd65f03c0}; /* ret */
    memcpy(buf, insns, sizeof insns);
    return sizeof insns;
#else
#error "no test code for this architecture"
#endif
}

typedef int (*ret_fn)(void);

static void bad_inputs(void) {
    wx_thunk *t = (wx_thunk *)1;
    /* Signatures. */
    CHECK_ERR(wx_thunk_new(NULL, "ix", (void *)add_ctx, NULL, &t), WX_ERR_INVALID_ARGUMENT,
              "'x' at position 1");
    CHECK(t == NULL);
    CHECK_ERR(wx_thunk_new(NULL, "I", (void *)add_ctx, NULL, &t), WX_ERR_INVALID_ARGUMENT,
              "the letters are");
    CHECK_ERR(wx_thunk_new(NULL, "iiiiiiiiiiiiiiiii", (void *)add_ctx, NULL, &t),
              WX_ERR_INVALID_ARGUMENT, "17 arguments");
    CHECK_ERR(wx_thunk_new(NULL, NULL, (void *)add_ctx, NULL, &t), WX_ERR_NULL_ARGUMENT, "args");
    CHECK_ERR(wx_thunk_new(NULL, "i", NULL, NULL, &t), WX_ERR_NULL_ARGUMENT, "target");
    CHECK_ERR(wx_thunk_new(NULL, "i", (void *)add_ctx, NULL, NULL), WX_ERR_NULL_ARGUMENT, "out");
    /* NULL handles. */
    CHECK_ERR(wx_block_write(NULL, "x", 1), WX_ERR_NULL_ARGUMENT, "block");
    CHECK_ERR(wx_block_exec(NULL), WX_ERR_NULL_ARGUMENT, "block");
    CHECK_ERR(wx_block_new(16, NULL), WX_ERR_NULL_ARGUMENT, "out");
    CHECK_ERR(wx_span_write(NULL, "x", 1), WX_ERR_NULL_ARGUMENT, "span");
    CHECK_ERR(wx_heap_new(NULL), WX_ERR_NULL_ARGUMENT, "out");
    CHECK_ERR(wx_heap_stats(NULL, NULL), WX_ERR_NULL_ARGUMENT, "out");
    CHECK(wx_block_code(NULL, 0) == NULL);
    CHECK(wx_thunk_fn(NULL) == NULL);
    CHECK(wx_span_code(NULL, 0) == NULL);
    /* Frees of NULL are no-ops, twice over. */
    wx_block_free(NULL);
    wx_block_free(NULL);
    wx_thunk_free(NULL);
    wx_thunk_free(NULL);
    wx_span_free(NULL);
    CHECK_OK(wx_heap_free(NULL));
    CHECK_OK(wx_heap_free(NULL));
    wx_heap_release(NULL);
    /* Options. */
    wx_heap_options bad = {0};
    bad.strategy = 99;
    wx_heap *h = (wx_heap *)1;
    CHECK_ERR(wx_heap_new_with(&bad, &h), WX_ERR_INVALID_ARGUMENT, "99 is not a wx_strategy");
    CHECK(h == NULL);
    printf("ok: bad signatures, NULL handles and outputs, NULL frees, bad options\n");
}

static void thunks(void) {
    wx_thunk *t = NULL;
    CHECK_OK(wx_thunk_new(NULL, "i", (void *)add_ctx, (void *)40, &t));
    intptr_t (*f)(intptr_t) = (intptr_t (*)(intptr_t))wx_thunk_fn(t);
    CHECK(f(2) == 42);
    wx_thunk_free(t);
    /* No arguments; a NULL context arrives as NULL. */
    CHECK_OK(wx_thunk_new(NULL, "", (void *)echo_ctx, NULL, &t));
    void *(*g)(void) = (void *(*)(void))wx_thunk_fn(t);
    CHECK(g() == NULL);
    wx_thunk_free(t);
    CHECK_OK(wx_thunk_new(NULL, "", (void *)echo_ctx, &t, &t));
    g = (void *(*)(void))wx_thunk_fn(t);
    CHECK(g() == (void *)&t);
    wx_thunk_free(t);

    /* A heap with live thunks cannot be freed; it stays usable. */
    wx_heap *h = NULL;
    CHECK_OK(wx_heap_new(&h));
    wx_thunk *a = NULL, *b = NULL;
    CHECK_OK(wx_thunk_new(h, "i", (void *)add_ctx, (void *)1, &a));
    CHECK_OK(wx_thunk_new(h, "i", (void *)add_ctx, (void *)2, &b));
    CHECK_ERR(wx_heap_free(h), WX_ERR_IN_USE, "2 live thunks or spans");
    f = (intptr_t (*)(intptr_t))wx_thunk_fn(a);
    CHECK(f(10) == 11);
    wx_stats st;
    CHECK_OK(wx_heap_stats(h, &st));
    CHECK(st.strategy >= WX_STRATEGY_PROTECT && st.strategy <= WX_STRATEGY_STATIC_TRAMPOLINES);
    wx_thunk_free(a);
    CHECK_ERR(wx_heap_free(h), WX_ERR_IN_USE, "1 live");
    wx_thunk_free(b);
    size_t released = 12345;
    CHECK_OK(wx_heap_compact(h, &released));
    CHECK_OK(wx_heap_compact(h, NULL));
    CHECK_OK(wx_heap_free(h));

    /* A released heap lives until its last thunk goes. */
    CHECK_OK(wx_heap_new(&h));
    CHECK_OK(wx_thunk_new(h, "i", (void *)add_ctx, (void *)5, &a));
    wx_heap_release(h);
    f = (intptr_t (*)(intptr_t))wx_thunk_fn(a);
    CHECK(f(1) == 6);
    wx_thunk_free(a);
    printf("ok: thunks, NULL context, heaps with live thunks refused then freed, release\n");
}

static void blocks(void) {
    unsigned char code[16];
    size_t n = ret_code(code, 7);
    wx_block *b = NULL;
    CHECK_OK(wx_block_new(1, &b));
    size_t page = wx_page_size();
    CHECK(page >= 4096 && (page & (page - 1)) == 0);
    CHECK(wx_block_capacity(b) == page);
    CHECK(wx_block_code(b, 0) == NULL); /* not sealed */
    CHECK_OK(wx_block_write(b, code, n));
    CHECK_OK(wx_block_write(b, NULL, 0));
    CHECK_ERR(wx_block_write(b, NULL, 1), WX_ERR_NULL_ARGUMENT, "bytes");
    /* Past the capacity: an error, nothing written. */
    CHECK_ERR(wx_block_write(b, code, page), WX_ERR_OUT_OF_BOUNDS, "do not fit");
    CHECK(wx_block_len(b) == n);
    CHECK_ERR(wx_block_set_len(b, page + 1), WX_ERR_OUT_OF_BOUNDS, "");
    CHECK(wx_block_code(b, 0) == NULL);
    CHECK_OK(wx_block_exec(b));
    CHECK_OK(wx_block_exec(b)); /* sealing twice does nothing */
    CHECK(wx_block_code(b, n) == NULL); /* past the end */
    ret_fn f = (ret_fn)wx_block_code(b, 0);
    CHECK(f != NULL && f() == 7);
    /* A write to a sealed block is an error and changes nothing. */
    CHECK_ERR(wx_block_write(b, code, n), WX_ERR_BAD_STATE, "sealed");
    CHECK(f() == 7);
    /* Re-JIT at the same address. */
    CHECK_OK(wx_block_writable(b));
    CHECK(wx_block_code(b, 0) == NULL);
    CHECK_OK(wx_block_set_len(b, 0));
    n = ret_code(code, 9);
    CHECK_OK(wx_block_write(b, code, n));
    CHECK_OK(wx_block_exec(b));
    CHECK((ret_fn)wx_block_code(b, 0) == f);
    CHECK(f() == 9);
    wx_block_free(b);
    printf("ok: blocks: capacity in pages, bounds, sealed writes refused, re-JIT\n");
}

static void spans(void) {
    unsigned char code[16];
    wx_span *s = NULL;
    wx_status st = wx_span_page(NULL, &s);
    if (st == WX_ERR_UNSUPPORTED) {
        /* A static-trampoline global heap has no spans. */
        printf("ok: spans refused (%s)\n", wx_last_error());
        return;
    }
    CHECK_OK(st);
    CHECK(wx_span_capacity(s) == wx_page_size());
    /* member_thunk's page: several pieces of code, one seal. */
    size_t at[4], len = 0;
    for (int i = 0; i < 4; i++) {
        at[i] = len;
        size_t n = ret_code(code, (uint16_t)(100 + i));
        CHECK_OK(wx_span_write(s, code, n));
        /* Keep entries 16-aligned. */
        static const unsigned char pad[16] = {0};
        size_t padding = (16 - n % 16) % 16;
        CHECK_OK(wx_span_write(s, pad, padding));
        len += n + padding;
    }
    CHECK(wx_span_code(s, 0) == NULL);
    CHECK_OK(wx_span_exec(s));
    CHECK_ERR(wx_span_write(s, code, 1), WX_ERR_BAD_STATE, "sealed");
    for (int i = 0; i < 4; i++) {
        ret_fn f = (ret_fn)wx_span_code(s, at[i]);
        CHECK(f != NULL && f() == 100 + i);
    }
    CHECK(wx_span_code(s, len) == NULL);
    wx_span_free(s);
    CHECK_ERR(wx_span_new(NULL, 0, &s), WX_ERR_INVALID_ARGUMENT, "");
    CHECK(s == NULL);
    printf("ok: spans: a page of several entries sealed once, bounds, sealed writes refused\n");
}

/* The last error is per thread: a thread that never failed sees "". */
static WX_THREAD_RESULT never_failed(void *arg) {
    *(int *)arg = strcmp(wx_last_error(), "") == 0;
    return 0;
}

static void last_error_per_thread(void) {
    wx_thunk *t;
    CHECK(wx_thunk_new(NULL, "?", (void *)add_ctx, NULL, &t) == WX_ERR_INVALID_ARGUMENT);
    CHECK(strlen(wx_last_error()) > 0);
    int clean = 0;
    wx_thread th = wx_thread_start(never_failed, &clean);
    wx_thread_join(th);
    CHECK(clean);
    /* A success leaves the last failure's message. */
    CHECK_OK(wx_thunk_new(NULL, "", (void *)echo_ctx, NULL, &t));
    CHECK(strstr(wx_last_error(), "'?'") != NULL);
    wx_thunk_free(t);
    CHECK(strcmp(wx_status_name(WX_ERR_IN_USE), "WX_ERR_IN_USE") == 0);
    CHECK(strcmp(wx_status_name(-3), "unknown status") == 0);
    printf("ok: the last error is this thread's; status names\n");
}

static void probe_and_version(void) {
    size_t n = wx_probe_json(NULL, 0);
    CHECK(n > 100);
    char *buf = malloc(n + 1);
    CHECK(wx_probe_json(buf, n + 1) == n);
    CHECK(strlen(buf) == n && buf[0] == '{' && buf[n - 1] == '}');
    char small[8];
    CHECK(wx_probe_json(small, sizeof small) == n);
    CHECK(strlen(small) == sizeof small - 1 && memcmp(small, buf, 7) == 0);
    CHECK(strstr(buf, "\"thunk_strategy\"") != NULL);
    free(buf);
    CHECK(wx_probe_text(NULL, 0) > 100);
    CHECK(strcmp(wx_version(), WXTHUNK_VERSION) == 0);
    CHECK(WXTHUNK_VERSION_NUMBER == WXTHUNK_VERSION_MAJOR * 10000 + WXTHUNK_VERSION_MINOR * 100 +
                                        WXTHUNK_VERSION_PATCH);
    printf("ok: probe (JSON and text, snprintf-like), version %s\n", wx_version());
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) {
        size_t n = wx_probe_json(NULL, 0);
        char *buf = malloc(n + 1);
        wx_probe_json(buf, n + 1);
        puts(buf);
        free(buf);
        return 0;
    }
    last_error_per_thread();
    bad_inputs();
    thunks();
    blocks();
    spans();
    probe_and_version();
    return check_result("api");
}
