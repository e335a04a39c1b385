/* qsort's comparator takes no user data; a thunk gives it some. The
 * comparator sorts by a key its context chooses and counts its calls. */
#include <stdio.h>
#include <stdlib.h>

#include "wxthunk.h"

struct by_digit {
    int digit; /* 0: ones, 1: tens */
    long calls;
};

static int compare(const void *a, const void *b, void *ctx) {
    struct by_digit *k = ctx;
    k->calls++;
    int x = *(const int *)a, y = *(const int *)b;
    for (int i = 0; i < k->digit; i++) {
        x /= 10;
        y /= 10;
    }
    return x % 10 - y % 10;
}

int main(void) {
    int v[] = {42, 17, 93, 8, 61, 25, 70, 34};
    size_t n = sizeof v / sizeof v[0];
    struct by_digit key = {0, 0};
    wx_thunk *t = NULL;
    /* "ii": two pointer arguments; the context follows them. */
    wx_status st = wx_thunk_new(NULL, "ii", (void *)compare, &key, &t);
    if (st != WX_OK) {
        fprintf(stderr, "wx_thunk_new: %s: %s\n", wx_status_name(st), wx_last_error());
        return 1;
    }
    int (*cmp)(const void *, const void *) = (int (*)(const void *, const void *))wx_thunk_fn(t);
    qsort(v, n, sizeof v[0], cmp);
    printf("by the ones digit (%ld comparisons):", key.calls);
    for (size_t i = 0; i < n; i++) printf(" %d", v[i]);
    key.digit = 1;
    qsort(v, n, sizeof v[0], cmp);
    printf("\nby the tens digit:");
    for (size_t i = 0; i < n; i++) printf(" %d", v[i]);
    printf("\n");
    wx_thunk_free(t);
    for (size_t i = 1; i < n; i++)
        if (v[i - 1] / 10 > v[i] / 10) return 1;
    return 0;
}
