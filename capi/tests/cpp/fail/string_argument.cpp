// expect: each argument is an integer (up to 64 bits), bool, pointer, enum, float or double
#include <string>
#include "wxthunk.hpp"
int main() {
    wx::thunk<int(std::string)> t([](std::string s) { return static_cast<int>(s.size()); });
    return t.get() != nullptr;
}
