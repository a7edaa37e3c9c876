#pragma once
// Helpers shared by the fuzz targets: a property violation aborts with a message, so
// libFuzzer records the input as a crash.

#include <cstdio>
#include <cstdlib>

namespace rollguard::fuzz {

/// Aborts (libFuzzer saves the input as crash-*) when `ok` is false.
inline void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz property violated: %s\n", what);
        std::abort();
    }
}

}  // namespace rollguard::fuzz
