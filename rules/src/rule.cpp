#include "rollguard/rules/diagnostics.h"
#include "rollguard/rules/rule.h"

namespace rollguard::rules {

const char* toString(Severity s) {
    return s == Severity::Critical ? "critical" : "warning";
}

const char* toString(Comparison c) {
    return c == Comparison::Above ? "above" : "below";
}

std::string Diagnostic::format() const {
    std::string out = where.file.empty() ? std::string("<config>") : where.file;
    if (where.line > 0) {
        out += ":" + std::to_string(where.line);
        if (where.column > 0) {
            out += ":" + std::to_string(where.column);
        }
    }
    out += level == Level::Error ? ": error: " : ": warning: ";
    out += message;
    return out;
}

}  // namespace rollguard::rules
