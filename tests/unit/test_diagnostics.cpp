#include <catch2/catch.hpp>

#include "rollguard/rules/diagnostics.h"

using rollguard::rules::Diagnostic;

TEST_CASE("diagnostics format as file:line:col: level: message", "[rules][diagnostics]") {
    Diagnostic d{Diagnostic::Level::Error, {"a.toml", 3, 7}, "unknown key 'windw'"};
    CHECK(d.format() == "a.toml:3:7: error: unknown key 'windw'");
    d.level = Diagnostic::Level::Warning;
    d.where.column = 0;
    CHECK(d.format() == "a.toml:3: warning: unknown key 'windw'");
}
