// expect: the callable cannot be called with Args... returning something convertible to R
#include "wxthunk.hpp"
int main() {
    wx::thunk<int(int)> t([](const char *s) { return s[0]; });
    return t.get() != nullptr;
}
