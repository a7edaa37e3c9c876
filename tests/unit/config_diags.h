#pragma once
// What the config-loader tests check: the diagnostics of parseConfig as "line:col:
// message" strings, by level, in report order.

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "rollguard/agent/config.h"

namespace rollguard::testing {

using Strings = std::vector<std::string>;

/// The path the texts are parsed as (diagnostics must name it).
inline const std::string kConfigPath = "/etc/rollguard/rollguard.toml";

/// "line:col: message" of every diagnostic of one level, in report order.
inline Strings diags(const agent::LoadResult& r, agent::Diagnostic::Level level) {
    Strings out;
    for (const auto& d : r.diagnostics) {
        if (d.level == level) {
            CHECK(d.where.file == kConfigPath);
            out.push_back(std::to_string(d.where.line) + ":" + std::to_string(d.where.column) + ": " + d.message);
        }
    }
    return out;
}

/// The errors of `text`; checks that the config loaded exactly when there are none.
inline Strings errorsOf(const std::string& text) {
    const agent::LoadResult r = agent::parseConfig(text, kConfigPath);
    const Strings errors = diags(r, agent::Diagnostic::Level::Error);
    CHECK(r.ok() == errors.empty());
    return errors;
}

/// The warnings of `text`, without those containing `except` (when not empty).
inline Strings warningsOf(const std::string& text, std::string_view except = {}) {
    Strings out;
    for (auto& w : diags(agent::parseConfig(text, kConfigPath), agent::Diagnostic::Level::Warning)) {
        if (except.empty() || w.find(except) == std::string::npos) {
            out.push_back(std::move(w));
        }
    }
    return out;
}

}  // namespace rollguard::testing
