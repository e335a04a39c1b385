/* A million thunks on the global heap, each with its own context, called,
 * then freed, three rounds: once the heap is compacted, the heap's memory
 * is back where it started and the process's resident memory does not
 * grow from round to round (flat, from the second round on). Prints the figures.
 * Usage: million [COUNT] [--heap-only]; --heap-only skips the resident
 * check, for emulators, whose own memory is in it. */
#include <stdint.h>
#include <time.h>

#include "check.h"

#ifdef _WIN32
#include <windows.h>
#include <psapi.h>
static size_t resident(void) {
    PROCESS_MEMORY_COUNTERS pmc;
    if (!K32GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc)) return 0;
    return pmc.WorkingSetSize;
}
#else
#include <unistd.h>
static size_t resident(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &pages) != 2) pages = 0;
    fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

static uintptr_t plus_ctx(uintptr_t x, void *ctx) { return x + (uintptr_t)ctx; }

int main(int argc, char **argv) {
    size_t count = 1000000;
    int heap_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--heap-only") == 0)
            heap_only = 1;
        else
            count = strtoul(argv[i], NULL, 10);
    }
    wx_thunk **t = malloc(count * sizeof *t);
    CHECK(t != NULL);
    if (!t) return check_result("million");
    wx_stats before;
    CHECK_OK(wx_heap_stats(NULL, &before));
    size_t rss[3] = {0, 0, 0};
    size_t committed_live = 0;
    for (int round = 0; round < 3; round++) {
        clock_t c0 = clock();
        for (size_t i = 0; i < count; i++) {
            wx_status st = wx_thunk_new(NULL, "i", (void *)plus_ctx, (void *)(i * 8), &t[i]);
            if (st != WX_OK) {
                fprintf(stderr, "thunk %zu: %s: %s\n", i, wx_status_name(st), wx_last_error());
                check_failures++;
                count = i;
                break;
            }
        }
        clock_t c1 = clock();
        for (size_t i = 0; i < count; i += 997) {
            uintptr_t (*f)(uintptr_t) = (uintptr_t (*)(uintptr_t))wx_thunk_fn(t[i]);
            CHECK(f(3) == i * 8 + 3);
        }
        wx_stats live;
        CHECK_OK(wx_heap_stats(NULL, &live));
        committed_live = live.bytes_committed;
        for (size_t i = 0; i < count; i++) wx_thunk_free(t[i]);
        size_t released = 0;
        CHECK_OK(wx_heap_compact(NULL, &released));
        wx_stats after;
        CHECK_OK(wx_heap_stats(NULL, &after));
        rss[round] = resident();
        printf("round %d: %zu thunks made in %.0f ns each; heap %zu KiB committed while live, "
               "%zu KiB after compact (%zu KiB given back); resident %zu KiB\n",
               round, count, 1e9 * (double)(c1 - c0) / CLOCKS_PER_SEC / (double)count,
               committed_live >> 10, after.bytes_committed >> 10, released >> 10, rss[round] >> 10);
        /* The heap holds no more than it did before the first thunk (a
         * region kept for reuse at most). */
        CHECK(after.bytes_committed <= before.bytes_committed + (1 << 20));
    }
    /* Flat: the last round ends where the one before did, within 4 MiB (a
     * leak of even 8 bytes a thunk is 8 MiB a round). Not against the first
     * round: glibc raises its trim threshold once it frees a large chunk,
     * so the first round may give back malloc memory that later rounds
     * keep for reuse (the handles' 32 MB here). */
    if (!heap_only) CHECK(rss[2] <= rss[1] + (4u << 20));
    free(t);
    return check_result("million");
}
