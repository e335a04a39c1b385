/* Thunks called by real C callers: qsort with state, bsearch, nftw, a
 * signal handler (POSIX), a thread routine (Windows), and many threads
 * making, calling and freeing thunks at once on one heap. */
#define _XOPEN_SOURCE 700
#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "threads.h"

#ifndef _WIN32
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

/* qsort with state: the comparator counts its calls and sorts by a key
 * that its context chooses (descending or ascending). */
struct order {
    int descending;
    long calls;
};

static int compare(const void *a, const void *b, void *ctx) {
    struct order *o = ctx;
    o->calls++;
    int x = *(const int *)a, y = *(const int *)b;
    int r = (x > y) - (x < y);
    return o->descending ? -r : r;
}

static void sorting(wx_heap *heap) {
    int v[200];
    for (int i = 0; i < 200; i++) v[i] = (i * 7919) % 200 - 100;
    struct order desc = {1, 0}, asc = {0, 0};
    wx_thunk *td = NULL, *ta = NULL;
    CHECK_OK(wx_thunk_new(heap, "ii", (void *)compare, &desc, &td));
    CHECK_OK(wx_thunk_new(heap, "ii", (void *)compare, &asc, &ta));
    if (!td || !ta) return;
    qsort(v, 200, sizeof v[0], (int (*)(const void *, const void *))wx_thunk_fn(td));
    for (int i = 1; i < 200; i++) CHECK(v[i - 1] >= v[i]);
    CHECK(desc.calls > 200 && asc.calls == 0);
    qsort(v, 200, sizeof v[0], (int (*)(const void *, const void *))wx_thunk_fn(ta));
    for (int i = 1; i < 200; i++) CHECK(v[i - 1] <= v[i]);
    int key = 42;
    int *found =
        bsearch(&key, v, 200, sizeof v[0], (int (*)(const void *, const void *))wx_thunk_fn(ta));
    CHECK(found && *found == 42);
    CHECK(asc.calls > 200);
    wx_thunk_free(td);
    wx_thunk_free(ta);
    printf("ok: qsort (both orders, %ld + %ld comparator calls) and bsearch\n", desc.calls,
           asc.calls);
}

#ifndef _WIN32
/* nftw: the callback counts regular files and their bytes into its
 * context. */
struct tally {
    int files;
    long bytes;
};

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw, void *ctx) {
    (void)path;
    (void)ftw;
    struct tally *t = ctx;
    if (type == FTW_F) {
        t->files++;
        t->bytes += (long)st->st_size;
    }
    return 0;
}

static void walking(wx_heap *heap) {
    char dir[] = "/tmp/wxthunk-c-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/f%d", dir, i);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f) {
            fwrite("abcdefgh", 1, (size_t)(i + 1), f);
            fclose(f);
        }
    }
    struct tally t = {0, 0};
    wx_thunk *th = NULL;
    CHECK_OK(wx_thunk_new(heap, "iiii", (void *)visit, &t, &th));
    if (!th) return;
    int r = nftw(dir, (int (*)(const char *, const struct stat *, int, struct FTW *))wx_thunk_fn(th),
                 8, FTW_PHYS);
    CHECK(r == 0 && t.files == 3 && t.bytes == 6);
    wx_thunk_free(th);
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/f%d", dir, i);
        unlink(path);
    }
    rmdir(dir);
    printf("ok: nftw counted %d files, %ld bytes\n", t.files, t.bytes);
}

/* A signal handler with SA_SIGINFO: the thunk takes (int, siginfo_t *,
 * void *) and its context records what arrived. */
struct seen {
    volatile sig_atomic_t signo;
    volatile sig_atomic_t code_ok;
};

static void on_signal(int signo, siginfo_t *info, void *uctx, void *ctx) {
    (void)uctx;
    struct seen *s = ctx;
    s->signo = signo;
    s->code_ok = info != NULL && info->si_signo == signo;
}

static void signals(wx_heap *heap) {
    struct seen s = {0, 0};
    wx_thunk *th = NULL;
    CHECK_OK(wx_thunk_new(heap, "iii", (void *)on_signal, &s, &th));
    if (!th) return;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))wx_thunk_fn(th);
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, &old) == 0);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(s.signo == SIGUSR1 && s.code_ok);
    CHECK(sigaction(SIGUSR1, &old, NULL) == 0);
    wx_thunk_free(th);
    printf("ok: a sigaction handler (SA_SIGINFO) got signal %d\n", (int)s.signo);
}
#else
/* A thread routine: CreateThread calls the thunk with its parameter. */
static DWORD thread_body(void *param, void *ctx) {
    *(int *)ctx = (int)(intptr_t)param;
    return 7;
}

static void windows_thread(wx_heap *heap) {
    int got = 0;
    wx_thunk *th = NULL;
    CHECK_OK(wx_thunk_new(heap, "i", (void *)thread_body, &got, &th));
    if (!th) return;
    HANDLE t = CreateThread(NULL, 0, (LPTHREAD_START_ROUTINE)wx_thunk_fn(th), (void *)(intptr_t)99,
                            0, NULL);
    CHECK(t != NULL);
    WaitForSingleObject(t, INFINITE);
    DWORD code = 0;
    GetExitCodeThread(t, &code);
    CloseHandle(t);
    CHECK(got == 99 && code == 7);
    wx_thunk_free(th);
    printf("ok: CreateThread ran a thunk as its routine\n");
}
#endif

/* Threads at once: each makes thunks on the shared heap and the global
 * heap, calls them, and frees them, many rounds. */
static int64_t scaled(int64_t x, double y, void *ctx) {
    return x * (int64_t)(intptr_t)ctx + (int64_t)y;
}

struct worker {
    wx_heap *heap;
    int id;
    int errors;
};

static WX_THREAD_RESULT work(void *arg) {
    struct worker *w = arg;
    enum { N = 64 };
    wx_thunk *t[N];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < N; i++) {
            wx_heap *h = (i % 2) ? w->heap : NULL;
            intptr_t k = w->id * 1000 + i + 1;
            if (wx_thunk_new(h, "id", (void *)scaled, (void *)k, &t[i]) != WX_OK) {
                w->errors++;
                t[i] = NULL;
            }
        }
        for (int i = 0; i < N; i++) {
            if (!t[i]) continue;
            int64_t (*f)(int64_t, double) = (int64_t (*)(int64_t, double))wx_thunk_fn(t[i]);
            intptr_t k = w->id * 1000 + i + 1;
            if (f(round, 0.5 + i) != round * k + i) w->errors++;
            wx_thunk_free(t[i]);
        }
    }
    return 0;
}

static void threads(wx_heap *heap) {
    enum { THREADS = 4 };
    struct worker w[THREADS];
    wx_thread th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].heap = heap;
        w[i].id = i;
        w[i].errors = 0;
        th[i] = wx_thread_start(work, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < THREADS; i++) {
        wx_thread_join(th[i]);
        errors += w[i].errors;
    }
    CHECK(errors == 0);
    printf("ok: %d threads made, called and freed %d thunks each\n", THREADS, 200 * 64);
}

int main(void) {
    wx_heap *heap = NULL;
    CHECK_OK(wx_heap_new(&heap));
    /* The global heap and a heap of our own. */
    wx_heap *heaps[2] = {NULL, heap};
    for (int i = 0; i < 2; i++) {
        sorting(heaps[i]);
#ifndef _WIN32
        walking(heaps[i]);
        signals(heaps[i]);
#else
        windows_thread(heaps[i]);
#endif
    }
    threads(heap);
    CHECK_OK(wx_heap_free(heap));
    return check_result("callers");
}
