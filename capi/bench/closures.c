/* wxthunk's C API beside libffi's closures (the C library), in one run:
 * creating and freeing a closure over a C function with a context (one at
 * a time, and 10,000 live at once), and calling one. Each figure is the
 * median of 7 rounds, the rounds of the two libraries interleaved.
 * Usage: closures [ROUNDS] (built and run by capi/bench/run.sh). */
#define _POSIX_C_SOURCE 200809L
#include <ffi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wxthunk.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The target both libraries reach: a + b + *ctx. */
static int add_ctx(int a, int b, void *ctx) { return a + b + *(int *)ctx; }

/* libffi's closures reach a generic handler, which unpacks the arguments. */
static void ffi_handler(ffi_cif *cif, void *ret, void **args, void *user) {
    (void)cif;
    *(ffi_arg *)ret = (ffi_arg)add_ctx(*(int *)args[0], *(int *)args[1], user);
}

static ffi_cif cif;
static ffi_type *arg_types[2];
static int k = 1;

enum { ONE_AT_A_TIME = 200000, LIVE = 10000, CALLS = 20000000 };
static wx_thunk *wx_live[LIVE];
static ffi_closure *ffi_live[LIVE];

static double wx_create_free(void) {
    double t0 = now_ns();
    for (int i = 0; i < ONE_AT_A_TIME; i++) {
        wx_thunk *t;
        if (wx_thunk_new(NULL, "ii", (void *)add_ctx, &k, &t) != WX_OK) abort();
        wx_thunk_free(t);
    }
    return (now_ns() - t0) / ONE_AT_A_TIME;
}

static double ffi_create_free(void) {
    double t0 = now_ns();
    for (int i = 0; i < ONE_AT_A_TIME; i++) {
        void *code;
        ffi_closure *c = ffi_closure_alloc(sizeof(ffi_closure), &code);
        if (!c || ffi_prep_closure_loc(c, &cif, ffi_handler, &k, code) != FFI_OK) abort();
        ffi_closure_free(c);
    }
    return (now_ns() - t0) / ONE_AT_A_TIME;
}

static double wx_live_batch(void) {
    double t0 = now_ns();
    for (int i = 0; i < LIVE; i++)
        if (wx_thunk_new(NULL, "ii", (void *)add_ctx, &k, &wx_live[i]) != WX_OK) abort();
    for (int i = 0; i < LIVE; i++) wx_thunk_free(wx_live[i]);
    return (now_ns() - t0) / LIVE;
}

static double ffi_live_batch(void) {
    double t0 = now_ns();
    for (int i = 0; i < LIVE; i++) {
        void *code;
        ffi_live[i] = ffi_closure_alloc(sizeof(ffi_closure), &code);
        if (!ffi_live[i] || ffi_prep_closure_loc(ffi_live[i], &cif, ffi_handler, &k, code) != FFI_OK)
            abort();
    }
    for (int i = 0; i < LIVE; i++) ffi_closure_free(ffi_live[i]);
    return (now_ns() - t0) / LIVE;
}

typedef int (*binary)(int, int);
static binary volatile through; /* read each call: no inlining */

static double calls(binary f) {
    through = f;
    int acc = 0;
    double t0 = now_ns();
    for (int i = 0; i < CALLS; i++) acc += through(i, 1);
    double ns = (now_ns() - t0) / CALLS;
    if (acc == 42) puts(""); /* keep the sum */
    return ns;
}

static int direct(int a, int b) { return add_ctx(a, b, &k); }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 7;
    if (rounds < 1 || rounds > 99) rounds = 7;
    arg_types[0] = &ffi_type_sint;
    arg_types[1] = &ffi_type_sint;
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 2, &ffi_type_sint, arg_types) != FFI_OK) return 1;

    wx_thunk *t;
    if (wx_thunk_new(NULL, "ii", (void *)add_ctx, &k, &t) != WX_OK) return 1;
    void *code;
    ffi_closure *c = ffi_closure_alloc(sizeof(ffi_closure), &code);
    if (!c || ffi_prep_closure_loc(c, &cif, ffi_handler, &k, code) != FFI_OK) return 1;
    binary wx_fn = (binary)wx_thunk_fn(t), ffi_fn = (binary)code;
    if (wx_fn(2, 3) != 6 || ffi_fn(2, 3) != 6) return 1;

    const char *names[] = {"create+free, one at a time", "create 10,000 live, then free them",
                           "call (2 int arguments)"};
    double r[3][3][99]; /* case, library (wx, libffi, direct), round */
    for (int i = 0; i < rounds; i++) {
        r[0][0][i] = wx_create_free();
        r[0][1][i] = ffi_create_free();
        r[1][0][i] = wx_live_batch();
        r[1][1][i] = ffi_live_batch();
        r[2][0][i] = calls(wx_fn);
        r[2][1][i] = calls(ffi_fn);
        r[2][2][i] = calls(direct);
    }
    printf("| case (median of %d rounds, ns per op) | wxthunk C API | libffi %s | libffi / wxthunk |\n",
           rounds, "closures");
    printf("| --- | --- | --- | --- |\n");
    for (int cs = 0; cs < 3; cs++) {
        double m[3];
        for (int lib = 0; lib < 3; lib++) {
            qsort(r[cs][lib], (size_t)rounds, sizeof(double), cmp_double);
            m[lib] = r[cs][lib][rounds / 2];
        }
        printf("| %s | %.1f | %.1f | %.2fx |\n", names[cs], m[0], m[1], m[1] / m[0]);
        if (cs == 2) printf("| direct call, for scale | %.1f | | |\n", m[2]);
    }
    wx_thunk_free(t);
    ffi_closure_free(c);
    return 0;
}
