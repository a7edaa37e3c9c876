#pragma once
// The admin side of the command line: `rollguard rollback`, `rearm`, `incidents`, and the
// admin API actions `rollguard run` serves. Wiring only; the logic is in the libraries.

#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "rollguard/agent/admin.h"
#include "rollguard/agent/config.h"
#include "rollguard/agent/daemon.h"
#include "rollguard/exporters/http_server.h"

namespace rollguard::cli {

struct RollbackArgs {
    std::string reason;
    std::string rule;
    double wait_seconds = 60.0;  ///< how long to follow a daemon's rollback to its end
};

/// A JSON object of string fields, with a trailing newline (admin API replies).
std::string jsonObject(std::initializer_list<std::pair<const char*, std::string>> fields);

/// The admin API of a running agent (`token` empty: disabled). `current` returns the
/// daemon serving now, which a reload replaces; the shared pointer keeps it alive for the
/// length of a request. The reload action is the caller's to add.
exporters::AdminApi adminApiFor(std::function<std::shared_ptr<agent::Daemon>()> current, std::string token);

int runRollback(const agent::Config& config, const RollbackArgs& args);
int runRearm(const agent::Config& config);
int runIncidents(const agent::Config& config, const std::string& id, bool json);

}  // namespace rollguard::cli
