/* Loads the wxthunk-dlopen-check cdylib named by argv[1] with dlopen and
 * calls thunks it makes with static trampolines. */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>

typedef int (*adder)(int);

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBRARY\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    adder (*make)(int) = (adder (*)(int))dlsym(lib, "wxthunk_dlopen_make_adder");
    size_t (*source)(char *, size_t) =
        (size_t (*)(char *, size_t))dlsym(lib, "wxthunk_dlopen_table_source");
    if (!make || !source) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 2;
    }
    adder a = make(10), b = make(-5);
    if (!a || !b) {
        fprintf(stderr, "no thunk: static trampolines do not work\n");
        return 1;
    }
    char buf[4096];
    size_t n = source(buf, sizeof buf);
    printf("table: %.*s\n", (int)(n < sizeof buf ? n : sizeof buf), buf);
    int sum = 0;
    for (int i = 0; i < 1000; i++) {
        sum += a(i) + b(i);
    }
    printf("a(32)=%d b(47)=%d sum=%d\n", a(32), b(47), sum);
    return (a(32) == 42 && b(47) == 42 && sum == 999000 + 5000) ? 0 : 1;
}
