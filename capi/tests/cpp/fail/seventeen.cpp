// expect: at most 16 arguments
#include "wxthunk.hpp"
int main() {
    wx::thunk<int(int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int)> t(
        [](int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int a) { return a; });
    return t.get() != nullptr;
}
