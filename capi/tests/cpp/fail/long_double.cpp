// expect: each argument is an integer (up to 64 bits), bool, pointer, enum, float or double
#include "wxthunk.hpp"
int main() {
    wx::thunk<int(long double)> t([](long double x) { return static_cast<int>(x); });
    return t.get() != nullptr;
}
