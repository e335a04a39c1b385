/* The C and C++ tests' checks: each failed check prints where and why
 * (with wxthunk's message for a status) and the program exits 1 at the
 * end; `ok` lines say what passed. */
#ifndef WXTHUNK_TEST_CHECK_H
#define WXTHUNK_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wxthunk.h"

static int check_failures;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,        \
                    __LINE__, #cond);                                     \
            check_failures++;                                             \
        }                                                                 \
    } while (0)

/* A call that must return WX_OK. */
#define CHECK_OK(call)                                                    \
    do {                                                                  \
        wx_status check_status_ = (call);                                 \
        if (check_status_ != WX_OK) {                                     \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__,      \
                    __LINE__, #call, wx_status_name(check_status_),       \
                    wx_last_error());                                     \
            check_failures++;                                             \
        }                                                                 \
    } while (0)

/* A call that must fail with `status` and a message containing `words`. */
#define CHECK_ERR(call, status, words)                                    \
    do {                                                                  \
        wx_status check_status_ = (call);                                 \
        if (check_status_ != (status)) {                                  \
            fprintf(stderr, "%s:%d: %s returned %s, not %s (%s)\n",       \
                    __FILE__, __LINE__, #call,                            \
                    wx_status_name(check_status_), #status,               \
                    wx_last_error());                                     \
            check_failures++;                                             \
        } else if (!strstr(wx_last_error(), (words))) {                   \
            fprintf(stderr, "%s:%d: %s: message \"%s\" lacks \"%s\"\n",   \
                    __FILE__, __LINE__, #call, wx_last_error(), (words)); \
            check_failures++;                                             \
        }                                                                 \
    } while (0)

/* Ends main: 0 if every check passed. */
static int check_result(const char *program) {
    if (check_failures) {
        fprintf(stderr, "%s: %d checks failed\n", program, check_failures);
        return 1;
    }
    printf("%s: all checks passed\n", program);
    return 0;
}

#endif
