// expect: the result is void, an integer (up to 64 bits), bool, pointer, enum, float or double
#include "wxthunk.hpp"
struct pair { long a, b; };
int main() {
    wx::thunk<pair(int)> t([](int x) { return pair{x, x}; });
    return t.get() != nullptr;
}
