// The C++ layer (wxthunk.hpp): any callable as a bare function pointer,
// member_thunk's use (an object and a member function behind a
// window-procedure-shaped pointer), every argument and result kind, moves,
// a heap destroyed before its thunks, blocks with re-JIT, errors thrown.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

extern "C" {
#include "check.h"
}
#include "wxthunk.hpp"

namespace {

// member_thunk's case: a window procedure bound to an object.
using HWND = void *;
using UINT = unsigned;
using WPARAM = std::uintptr_t;
using LPARAM = std::intptr_t;
using LRESULT = std::intptr_t;

class window {
public:
    explicit window(LRESULT base)
        : base_(base), proc_([this](HWND h, UINT m, WPARAM w, LPARAM l) { return on_message(h, m, w, l); }) {}
    LRESULT (*proc() const)(HWND, UINT, WPARAM, LPARAM) { return proc_.get(); }
    int messages = 0;

private:
    LRESULT on_message(HWND h, UINT m, WPARAM w, LPARAM l) {
        messages++;
        return base_ + static_cast<LRESULT>(m) * 1000 + static_cast<LRESULT>(w) + l +
               (h == this ? 1 : 0);
    }
    LRESULT base_;
    wx::thunk<LRESULT(HWND, UINT, WPARAM, LPARAM)> proc_;
};

enum class color : std::uint8_t { red = 1, green = 2, blue = 3 };

int twice(int x) { return 2 * x; }

struct adder {
    int k;
    int add(int x) const { return x + k; }
};

void callables() {
    // A lambda with captures.
    int offset = 40;
    wx::thunk<int(int)> add([offset](int x) { return x + offset; });
    CHECK(add.get()(2) == 42);
    // A mutable lambda keeps its state between calls.
    wx::thunk<int()> counter([n = 0]() mutable { return ++n; });
    auto next = counter.get();
    CHECK(next() == 1 && next() == 2 && next() == 3);
    // A move-only lambda.
    auto owned = std::make_unique<int>(7);
    wx::thunk<int(int)> times([p = std::move(owned)](int x) { return x * *p; });
    CHECK(times.get()(6) == 42);
    // std::function, a function pointer, a std::bind result, a member
    // function pointer with its object as the first argument.
    std::function<double(double)> half = [](double x) { return x / 2; };
    wx::thunk<double(double)> f(half);
    CHECK(f.get()(5.0) == 2.5);
    wx::thunk<int(int)> fp(&twice);
    CHECK(fp.get()(21) == 42);
    adder a{10};
    wx::thunk<int(int)> bound(std::bind(&adder::add, &a, std::placeholders::_1));
    CHECK(bound.get()(32) == 42);
    wx::thunk<int(const adder *, int)> member(&adder::add);
    CHECK(member.get()(&a, 1) == 11);
    printf("ok: lambdas (capturing, mutable, move-only), std::function, function and member "
           "pointers, std::bind\n");
}

void member_thunk() {
    window w(5);
    auto proc = w.proc();
    CHECK(proc(&w, 2, 30, 4) == 5 + 2000 + 30 + 4 + 1);
    CHECK(proc(nullptr, 1, 0, -5) == 5 + 1000 - 5);
    CHECK(w.messages == 2);
    printf("ok: a member function behind a window procedure's pointer\n");
}

void kinds() {
    wx::thunk<bool(bool, color)> is_blue([](bool flip, color c) { return flip != (c == color::blue); });
    CHECK(is_blue.get()(false, color::blue) && !is_blue.get()(true, color::blue));
    wx::thunk<color(int)> pick([](int i) { return static_cast<color>(i); });
    CHECK(pick.get()(2) == color::green);
    wx::thunk<float(float, double, std::int8_t, std::uint64_t)> mixed(
        [](float x, double y, std::int8_t z, std::uint64_t w) {
            return x + static_cast<float>(y) + z + static_cast<float>(w >> 60);
        });
    CHECK(mixed.get()(1.5f, 2.25, -4, UINT64_C(0xf000000000000000)) == 1.5f + 2.25f - 4 + 15);
    int hits = 0;
    wx::thunk<void(int *)> poke([&hits](int *p) {
        *p += 1;
        hits++;
    });
    int v = 1;
    poke.get()(&v);
    CHECK(v == 2 && hits == 1);
    // Sixteen arguments of both classes: the context goes to the stack.
    wx::thunk<double(int, int, int, int, int, int, int, int, double, double, double, double, double,
                     double, double, double)>
        sixteen([offset = 0.5](int a, int b, int c, int d, int e, int f, int g, int h, double i,
                              double j, double k, double l, double m, double n, double o,
                              double p) {
            return offset + a + b + c + d + e + f + g + h + i + j + k + l + m + n + o + p;
        });
    CHECK(sixteen.get()(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16) == 136.5);
    printf("ok: bool, enums, float, double, int8, uint64, void results, 16 arguments\n");
}

void moves_and_heaps() {
    wx::thunk<int(int)> a([k = 3](int x) { return x * k; });
    auto p = a.get();
    wx::thunk<int(int)> b(std::move(a));
    CHECK(b.get() == p && p(5) == 15);
    CHECK(a.get() == nullptr);
    wx::thunk<int(int)> c([](int x) { return -x; });
    c = std::move(b);
    CHECK(c.get() == p && p(2) == 6);
    std::vector<wx::thunk<int(int)>> many;
    for (int i = 0; i < 100; i++) many.emplace_back([i](int x) { return x + i; });
    for (int i = 0; i < 100; i++) CHECK(many[i].get()(1) == i + 1);

    // A heap destroyed while its thunks live: it stays until the last goes.
    auto h = std::make_unique<wx::heap>();
    wx::thunk<int(int)> on_heap(*h, [](int x) { return x + 1; });
    auto q = on_heap.get();
    CHECK(h->stats().strategy != WX_STRATEGY_AUTO);
    h.reset();
    CHECK(q(41) == 42);
    wx::heap h2;
    {
        wx::thunk<int(int)> t(h2, [](int x) { return x; });
        CHECK(t.get()(9) == 9);
    }
    h2.compact();
    printf("ok: moves keep the pointer, vectors of thunks, a heap outlived by its thunk\n");
}

void blocks_and_errors() {
    wx::block b(16);
#if defined(__x86_64__) || defined(_M_X64)
    const unsigned char ret7[] = {0xb8, 7, 0, 0, 0, 0xc3};
    const unsigned char ret9[] = {0xb8, 9, 0, 0, 0, 0xc3};
#elif defined(__aarch64__)
    const std::uint32_t ret7[] = {0x52800000u | (7u << 5), 0xd65f03c0};
    const std::uint32_t ret9[] = {0x52800000u | (9u << 5), 0xd65f03c0};
#endif
    CHECK(b.fn<int()>() == nullptr);
    b.write(ret7, sizeof ret7);
    b.exec();
    auto f = b.fn<int()>();
    CHECK(f && f() == 7);
    CHECK(b.fn<int()>(sizeof ret7) == nullptr);
    b.make_writable();
    b.set_len(0);
    b.write(ret9, sizeof ret9);
    b.exec();
    CHECK(b.fn<int()>() == f && f() == 9);
    bool threw = false;
    try {
        b.write(ret7, sizeof ret7);
    } catch (const wx::error &e) {
        threw = e.status() == WX_ERR_BAD_STATE && std::strstr(e.what(), "sealed") != nullptr;
    }
    CHECK(threw);
    threw = false;
    try {
        wx::block small(1);
        std::vector<unsigned char> big(small.capacity() + 1, 0);
        small.write(big.data(), big.size());
    } catch (const wx::error &e) {
        threw = e.status() == WX_ERR_OUT_OF_BOUNDS;
    }
    CHECK(threw);
    threw = false;
    try {
        wx_heap_options o{};
        o.strategy = 42;
        wx::heap bad(o);
    } catch (const std::runtime_error &e) {
        threw = std::strstr(e.what(), "42") != nullptr;
    }
    CHECK(threw);
    CHECK(wx::probe_json().find("\"thunk_strategy\"") != std::string::npos);
    CHECK(std::strcmp(wx::version(), WXTHUNK_VERSION) == 0);
    printf("ok: blocks with re-JIT, wx::error for bad input, probe, version\n");
}

// qsort with a capturing comparator.
void sorting() {
    int v[50];
    for (int i = 0; i < 50; i++) v[i] = (i * 37) % 50;
    bool descending = true;
    wx::thunk<int(const void *, const void *)> cmp([&](const void *a, const void *b) {
        int x = *static_cast<const int *>(a), y = *static_cast<const int *>(b);
        return descending ? y - x : x - y;
    });
    std::qsort(v, 50, sizeof v[0], cmp.get());
    for (int i = 1; i < 50; i++) CHECK(v[i - 1] > v[i]);
    printf("ok: qsort with a capturing lambda\n");
}

} // namespace

int main() {
    callables();
    member_thunk();
    kinds();
    moves_and_heaps();
    blocks_and_errors();
    sorting();
    return check_result("thunks (C++)");
}
