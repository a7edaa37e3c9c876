#pragma once

#include <string>
#include <vector>

namespace rollguard::rules {

/// Where something was written in a config file (1-based line and column; 0 = unknown).
struct SourceLocation {
    std::string file;
    int line = 0;
    int column = 0;
};

/// One problem found in a config: `file:line:col: error: message`.
struct Diagnostic {
    enum class Level { Error, Warning };
    Level level = Level::Error;
    SourceLocation where;
    std::string message;

    /// "file:line:col: error: message" (line/col omitted when unknown).
    std::string format() const;
};

using Diagnostics = std::vector<Diagnostic>;

}  // namespace rollguard::rules
