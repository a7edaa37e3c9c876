#include <cstdio>
int main() {
    std::puts("rollguard " ROLLGUARD_VERSION);
    return 0;
}
