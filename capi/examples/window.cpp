// member_thunk's use: a C API that takes a callback without user data,
// here a window procedure, bound to an object and its member function.
#include <cstdint>
#include <cstdio>
#include <string>

#include "wxthunk.hpp"

// What a windowing C library would declare: it calls `proc` with no way to
// say which object it is for.
using HWND = void *;
using UINT = unsigned;
using WPARAM = std::uintptr_t;
using LPARAM = std::intptr_t;
using LRESULT = std::intptr_t;
using WNDPROC = LRESULT (*)(HWND, UINT, WPARAM, LPARAM);

static LRESULT dispatch(WNDPROC proc, UINT message, WPARAM w) { return proc(nullptr, message, w, 0); }

class window {
public:
    explicit window(std::string title)
        : title_(std::move(title)),
          proc_([this](HWND h, UINT m, WPARAM w, LPARAM l) { return on_message(h, m, w, l); }) {}

    WNDPROC proc() const noexcept { return proc_.get(); }

private:
    LRESULT on_message(HWND, UINT message, WPARAM w, LPARAM) {
        std::printf("%s: message %u (%lu)\n", title_.c_str(), message, static_cast<unsigned long>(w));
        return static_cast<LRESULT>(title_.size() + w);
    }

    std::string title_;
    wx::thunk<LRESULT(HWND, UINT, WPARAM, LPARAM)> proc_;
};

int main() {
    try {
        window editor("editor"), viewer("viewer");
        LRESULT a = dispatch(editor.proc(), 0x0f, 1);
        LRESULT b = dispatch(viewer.proc(), 0x10, 2);
        std::printf("results %ld and %ld; two objects, two bare function pointers\n",
                    static_cast<long>(a), static_cast<long>(b));
        return a == 7 && b == 8 ? 0 : 1;
    } catch (const wx::error &e) {
        std::fprintf(stderr, "wxthunk: %s\n", e.what());
        return 1;
    }
}
