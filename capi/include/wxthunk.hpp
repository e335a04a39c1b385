/*
 * wxthunk.hpp: the C++17 layer over the C API (wxthunk.h), header-only.
 *
 *   wx::thunk<int(int, int)> cmp([&](int a, int b) { return order * (a - b); });
 *   qsort(v, n, sizeof *v, reinterpret_cast<int (*)(const void *, const void *)>(...));
 *   int (*fp)(int, int) = cmp.get();   // a bare function pointer
 *
 * - wx::thunk<R(Args...)> turns any callable (lambdas with captures, mutable
 *   and move-only ones, std::function, function pointers, std::bind results,
 *   an object and its member function) into a bare function pointer of the
 *   C convention: the callable is moved to the free store and the pointer
 *   calls it with the arguments. Arguments and results are integers, bool,
 *   pointers, enums, float and double (and void results); anything else is a
 *   static_assert with a message. Up to 16 arguments.
 * - wx::heap owns a code heap; wx::block is JIT memory (write, exec, call,
 *   writable again). Failures throw wx::error (a std::runtime_error with the
 *   library's message and its wx_status).
 * - Move-only handles: moving a thunk keeps its pointer valid (the pointer
 *   belongs to the code, not to the C++ object).
 * - A callable that throws out of a call through the pointer calls
 *   std::terminate: an exception cannot cross the C caller's frames.
 *
 * Thread safety: as the C functions say (wxthunk.h). A thunk's pointer may
 * be called from any thread; the callable must then be safe to call so.
 */
#ifndef WXTHUNK_HPP
#define WXTHUNK_HPP

#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "wxthunk.h"

namespace wx {

/** A failure of the library: its message (what()) and status. */
class error : public std::runtime_error {
public:
    error(wx_status status, const char *message)
        : std::runtime_error(message), status_(status) {}
    /** Why it failed. */
    wx_status status() const noexcept { return status_; }

private:
    wx_status status_;
};

namespace detail {

/** Throws wx::error for a failed status, with this thread's message. */
inline void check(wx_status status) {
    if (status != WX_OK) throw error(status, wx_last_error());
}

/** The signature letter of an argument type ('\0': not a thunk type). */
template <class T>
constexpr char letter() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_void_v<U>) {
        return '\0';
    } else if constexpr (std::is_same_v<U, float>) {
        return 'f';
    } else if constexpr (std::is_same_v<U, double>) {
        return 'd';
    } else if constexpr ((std::is_integral_v<U> || std::is_enum_v<U> || std::is_pointer_v<U> ||
                          std::is_null_pointer_v<U>) &&
                         sizeof(U) <= 8) {
        return 'i';
    } else {
        return '\0';
    }
}

template <class T>
constexpr bool is_arg = letter<T>() != '\0';

template <class R>
constexpr bool is_result = std::is_void_v<R> || is_arg<R>;

} // namespace detail

/** A code heap for thunks: the global heap unless one is given. Destroying
 * a heap whose thunks still live does not free it then: each thunk keeps it,
 * and it goes with the last of them (the thunks stay valid). */
class heap {
public:
    /** A heap with the default options. Throws wx::error. */
    heap() { detail::check(wx_heap_new(&h_)); }
    /** A heap with `options` (e.g. a strategy). Throws wx::error. */
    explicit heap(const wx_heap_options &options) { detail::check(wx_heap_new_with(&options, &h_)); }
    heap(const heap &) = delete;
    heap &operator=(const heap &) = delete;
    heap(heap &&other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
    heap &operator=(heap &&other) noexcept {
        if (this != &other) {
            wx_heap_release(h_);
            h_ = std::exchange(other.h_, nullptr);
        }
        return *this;
    }
    ~heap() { wx_heap_release(h_); }

    /** Gives freed code's memory back to the system; the bytes given back. */
    std::size_t compact() {
        std::size_t released = 0;
        detail::check(wx_heap_compact(h_, &released));
        return released;
    }
    /** What the heap holds. */
    wx_stats stats() const {
        wx_stats s{};
        detail::check(wx_heap_stats(h_, &s));
        return s;
    }
    /** The C handle (owned by this object). */
    wx_heap *get() const noexcept { return h_; }

private:
    wx_heap *h_ = nullptr;
};

/** JIT memory: write machine code, exec() it, call it through fn<>(); make
 * it writable again to rewrite it at the same address. */
class block {
public:
    /** A writable block of at least `len` bytes (whole pages). */
    explicit block(std::size_t len) { detail::check(wx_block_new(len, &b_)); }
    block(const block &) = delete;
    block &operator=(const block &) = delete;
    block(block &&other) noexcept : b_(std::exchange(other.b_, nullptr)) {}
    block &operator=(block &&other) noexcept {
        if (this != &other) {
            wx_block_free(b_);
            b_ = std::exchange(other.b_, nullptr);
        }
        return *this;
    }
    ~block() { wx_block_free(b_); }

    /** Appends `len` bytes (past the capacity: wx::error, nothing written). */
    void write(const void *bytes, std::size_t len) { detail::check(wx_block_write(b_, bytes, len)); }
    /** Seals the block: read+execute. */
    void exec() { detail::check(wx_block_exec(b_)); }
    /** Writable again at the same address, the code kept (re-JIT). */
    void make_writable() { detail::check(wx_block_writable(b_)); }
    /** Sets the code's length (0: start over). */
    void set_len(std::size_t len) { detail::check(wx_block_set_len(b_, len)); }
    std::size_t size() const noexcept { return wx_block_len(b_); }
    std::size_t capacity() const noexcept { return wx_block_capacity(b_); }

    /** The code at `offset` as a pointer to function type Fn, e.g.
     * `b.fn<int(int)>()`; nullptr before exec() or past the end. */
    template <class Fn>
    Fn *fn(std::size_t offset = 0) const {
        static_assert(std::is_function_v<Fn>, "wx::block::fn<Fn>: Fn is a function type, e.g. int(int)");
        return reinterpret_cast<Fn *>(wx_block_code(b_, offset));
    }

private:
    wx_block *b_ = nullptr;
};

template <class Sig>
class thunk;

/** A bare function pointer R(*)(Args...) that calls a callable. */
template <class R, class... Args>
class thunk<R(Args...)> {
    static_assert(sizeof...(Args) <= 16, "wx::thunk: at most 16 arguments");
    static_assert((detail::is_arg<Args> && ...),
                  "wx::thunk: each argument is an integer (up to 64 bits), bool, pointer, enum, "
                  "float or double");
    static_assert(detail::is_result<R>,
                  "wx::thunk: the result is void, an integer (up to 64 bits), bool, pointer, enum, "
                  "float or double");

public:
    using pointer = R (*)(Args...);

    /** A thunk on the global heap calling `f`. Throws wx::error. */
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, thunk>>>
    explicit thunk(F f) {
        make<F>(nullptr, std::move(f));
    }
    /** A thunk on `h` calling `f`. Throws wx::error. */
    template <class F>
    thunk(heap &h, F f) {
        make<F>(h.get(), std::move(f));
    }
    thunk(const thunk &) = delete;
    thunk &operator=(const thunk &) = delete;
    /** Moves keep the pointer valid: it belongs to the code. */
    thunk(thunk &&other) noexcept
        : t_(std::exchange(other.t_, nullptr)),
          callable_(std::exchange(other.callable_, nullptr)),
          destroy_(other.destroy_) {}
    thunk &operator=(thunk &&other) noexcept {
        if (this != &other) {
            reset();
            t_ = std::exchange(other.t_, nullptr);
            callable_ = std::exchange(other.callable_, nullptr);
            destroy_ = other.destroy_;
        }
        return *this;
    }
    ~thunk() { reset(); }

    /** The function pointer; nullptr after a move from this object. */
    pointer get() const noexcept { return reinterpret_cast<pointer>(wx_thunk_fn(t_)); }

private:
    template <class F>
    static R entry(Args... args, void *ctx) noexcept {
        return static_cast<R>(std::invoke(*static_cast<F *>(ctx), args...));
    }

    template <class F>
    void make(wx_heap *h, F f) {
        static_assert(std::is_invocable_r_v<R, F &, Args...>,
                      "wx::thunk<R(Args...)>: the callable cannot be called with Args... returning "
                      "something convertible to R");
        static constexpr char letters[] = {detail::letter<Args>()..., '\0'};
        auto owned = std::make_unique<F>(std::move(f));
        R (*target)(Args..., void *) noexcept = &entry<F>;
        detail::check(wx_thunk_new(h, letters, reinterpret_cast<const void *>(target), owned.get(), &t_));
        callable_ = owned.release();
        destroy_ = [](void *p) { delete static_cast<F *>(p); };
    }

    void reset() noexcept {
        // The code first: no call can reach the callable once it goes.
        wx_thunk_free(t_);
        t_ = nullptr;
        if (callable_) destroy_(callable_);
        callable_ = nullptr;
    }

    wx_thunk *t_ = nullptr;
    void *callable_ = nullptr;
    void (*destroy_)(void *) = nullptr;
};

/** The probe's report as JSON (wx_probe_json). */
inline std::string probe_json() {
    std::string s(wx_probe_json(nullptr, 0), '\0');
    wx_probe_json(s.data(), s.size() + 1);
    return s;
}

/** The library's version, e.g. "0.1.0". */
inline const char *version() noexcept { return wx_version(); }

} // namespace wx

#endif
