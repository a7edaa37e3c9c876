#pragma once

#include <filesystem>
#include <string>

namespace rollguard::testing {

/// What an agent test adds to the config errorRatioConfig writes.
struct ErrorRatioConfig {
    std::string agent;  ///< lines of [agent] (listen, tick, state_dir, admin token...)
    std::string rule;   ///< more lines of the rule "errors" (for, hooks, severity...)
    std::string tail;   ///< tables after the rule ([[hook]]s, more [[rule]]s)
};

/// The config most agent tests start from: `[agent]` with `extra.agent`; a json_log
/// source "app" on `<dir>/app.log`, read from the beginning, whose lines with status >=
/// 500 are errors; a rule "errors": error_ratio above 0.5 over 1m, with `extra.rule`;
/// then `extra.tail`.
std::string errorRatioConfig(const std::filesystem::path& dir, const ErrorRatioConfig& extra);

/// A token the agent accepts in `admin_token_file` (32 bytes or more).
inline constexpr const char* kAdminToken = "rollguard-tests-admin-token-0123456789";
/// Writes kAdminToken to `file` with mode 0600 (a token others can read is refused).
void writeAdminToken(const std::filesystem::path& file);
/// The request header that carries kAdminToken: "Authorization: Bearer ...".
std::string adminAuthorization();

/// `n` JSON log lines {"status":<status>}, each ending in a newline.
std::string statusLines(int n, int status);

}  // namespace rollguard::testing
