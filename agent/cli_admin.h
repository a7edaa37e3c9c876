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

/// The admin API of a running agent (rollback, rearm, rollout commands); `token` is what
/// its TCP listener wants (empty: the API is off there). `current` returns the
/// daemon serving now, which a reload replaces; the shared pointer keeps it alive for the
/// length of a request. The reload action is the caller's to add.
exporters::AdminApi adminApiFor(std::function<std::shared_ptr<agent::Daemon>()> current,
                                std::shared_ptr<const agent::AdminToken> token);

struct RolloutArgs {
    std::string action;  ///< status | pause | resume | promote | abort
    std::string reason;
    bool json = false;
};

int runRollback(const agent::Config& config, const RollbackArgs& args);
int runRearm(const agent::Config& config);
int runIncidents(const agent::Config& config, const std::string& id, bool json);
/// `rollguard rollout status|pause|resume|promote|abort`. status: from the running
/// daemon (GET /api/v1/rollout), else from <state_dir>/rollout.json. The commands go
/// through the running daemon only: its Unix socket in state_dir, or without a
/// state_dir its TCP listener with the admin token. Exit codes: 0 done; 1 refused by the
/// controller (409), no daemon running, or the daemon not reachable; 2 no [rollout]
/// section (in the file or in the daemon's running config).
int runRollout(const agent::Config& config, const RolloutArgs& args);

}  // namespace rollguard::cli
