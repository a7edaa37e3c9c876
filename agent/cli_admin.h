#pragma once
// The admin side of the command line: `rollguard rollback`, `rearm`, `incidents`, and the
// admin API actions `rollguard run` serves. Wiring only; the logic is in the libraries.

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

/// The admin API of a running daemon (`token` empty: disabled).
exporters::AdminApi adminApiFor(agent::Daemon& daemon, std::string token);

int runRollback(const agent::Config& config, const RollbackArgs& args);
int runRearm(const agent::Config& config);
int runIncidents(const agent::Config& config, const std::string& id, bool json);

}  // namespace rollguard::cli
