// rollguard rollback / rearm / incidents / rollout: through the running daemon when one holds
// the state directory's lock (its Unix socket there, no token), directly otherwise.
#include "cli_admin.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "rollguard/agent/incidents.h"
#include "rollguard/agent/json_writer.h"
#include "rollguard/agent/rule_value.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/duration.h"

namespace rollguard::cli {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

/// How the CLI reaches the state: a running daemon (lock held by someone else) or
/// directly (we now hold the lock). Prints the problem and returns nullopt on failure.
enum class Route { Daemon, Direct };
std::optional<Route> route(const agent::Config& config, std::optional<agent::StateDirLock>& lock, std::string& holder) {
    if (config.agent.state_dir.empty()) {
        return Route::Direct;  // no state shared with a daemon: nothing to coordinate
    }
    switch (agent::StateDirLock::tryAcquire(config.agent.state_dir, lock, holder)) {
        case agent::StateDirLock::Outcome::Acquired:
            return Route::Direct;
        case agent::StateDirLock::Outcome::HeldByOther:
            return Route::Daemon;
        case agent::StateDirLock::Outcome::Failed:
            std::cerr << "rollguard: " << holder << "\n";
            return std::nullopt;
    }
    return std::nullopt;
}

/// Where a running daemon is reached: its Unix socket in state_dir (no token needed), or,
/// without a state_dir, its TCP listener with the token of admin_token_file. Prints why
/// it cannot be and returns nullopt.
std::optional<agent::AdminEndpoint> daemonEndpoint(const agent::Config& config, const std::string& holder,
                                                   bool needs_token) {
    agent::AdminEndpoint to;
    if (!config.agent.state_dir.empty()) {
        to.unix_socket = agent::adminSocketPath(config.agent.state_dir);
        return to;
    }
    to.listen = config.agent.listen;
    if (to.listen.empty()) {
        std::cerr << "rollguard: no agent.state_dir and no agent.listen: there is no way to reach a running agent\n";
        return std::nullopt;
    }
    if (needs_token) {
        if (config.agent.admin_token_file.empty()) {
            std::cerr << "rollguard: without agent.state_dir the agent (" << holder
                      << ") is reached over TCP, and its admin API there needs agent.admin_token_file (the same "
                         "file for the agent and this command); or set agent.state_dir to use its local socket\n";
            return std::nullopt;
        }
        std::string error;
        const auto token = agent::readAdminToken(config.agent.admin_token_file, error);
        if (!token) {
            std::cerr << "rollguard: " << error << "\n";
            return std::nullopt;
        }
        to.token = *token;
    }
    return to;
}

/// POSTs to the daemon; prints why it could not and returns nullopt.
std::optional<agent::AdminResponse> callDaemon(const agent::Config& config, const std::string& holder,
                                               const std::string& path, const std::string& body) {
    const auto to = daemonEndpoint(config, holder, true);
    if (!to) {
        return std::nullopt;
    }
    auto response = agent::adminPost(*to, path, body, std::chrono::seconds{30});
    if (response.status == 0) {
        std::cerr << "rollguard: the daemon (" << holder << ") did not answer: " << response.error
                  << (to->unix_socket.empty() ? "" : "; its log says why its admin socket is missing, if it is")
                  << "\n";
        return std::nullopt;
    }
    if (response.status == 403 && !to->unix_socket.empty()) {
        std::cerr << "rollguard: the daemon (" << holder << ") refused this user: "
                  << agent::jsonStringMember(response.body, "error").value_or(response.body)
                  << " (run the command as that user, e.g. with sudo -u)\n";
        return std::nullopt;
    }
    return response;
}

std::string describe(const agent::IncidentHookStep& h) {
    std::string out = fmt::format("  {:<8} {}", agent::toString(h.status), h.hook);
    if (h.status == agent::HookStepStatus::Ok || h.status == agent::HookStepStatus::Failed) {
        out += fmt::format(" ({}ms{})", h.duration.count(), h.runs > 1 ? fmt::format(", run {} times", h.runs) : "");
    }
    if (!h.message.empty()) {
        out += ": " + h.message;
    }
    return out;
}

std::string formatValue(double v) {
    return std::isnan(v) ? std::string("-") : fmt::format("{:.4g}", v);
}

/// The list's value column: a comparison's effect as a change, a baseline rule's value
/// as its ratio to the baseline, so neither reads as a metric value.
std::string shortValue(const agent::BreachEvent& e) {
    if (e.mann_whitney && !std::isnan(e.value)) {
        return agent::formatChange(e.value);
    }
    if (const auto ratio = agent::baselineRatio(agent::valueReadingOf(e))) {
        return agent::formatFactor(*ratio);
    }
    return formatValue(e.value);
}

void printRecord(const agent::IncidentRecord& r) {
    std::cout << "incident " << r.id << " (" << r.kind << "), opened " << agent::formatRfc3339(r.opened)
              << (r.complete ? "" : ", NOT FINISHED") << "\n";
    std::cout << "  rule " << r.event.rule << (r.event.group.empty() ? "" : " {" + r.event.group + "}") << " ("
              << r.event.severity << "): " << r.reason << "\n";
    if (r.kind == "rule") {
        if (r.event.value_text.empty()) {
            std::cout << "  value " << formatValue(r.event.value) << " " << r.event.comparison << " "
                      << formatValue(r.event.threshold);
        } else {
            std::cout << "  " << r.event.value_text;
        }
        std::cout << ", window " << rules::formatDuration(r.event.window) << ", "
                  << r.stats.events << " events, " << r.stats.errors << " errors";
        if (r.stats.p99) {
            std::cout << ", p50 " << rules::formatSeconds(*r.stats.p50) << " p99 " << rules::formatSeconds(*r.stats.p99)
                      << " max " << rules::formatSeconds(*r.stats.max);
        }
        std::cout << "\n";
    }
    std::cout << "  hooks:\n";
    for (const auto& h : r.hooks) {
        std::cout << describe(h) << "\n";
    }
    if (!r.log_lines.empty()) {
        std::cout << "  last log lines:\n";
        for (const auto& l : r.log_lines) {
            std::cout << "    " << l << "\n";
        }
    }
}

int outcomeOf(const agent::IncidentRecord& r) {
    for (const auto& h : r.hooks) {
        if (h.status == agent::HookStepStatus::Failed) {
            return kExitRuntime;
        }
    }
    return r.complete ? kExitOk : kExitRuntime;
}

/// Follows a daemon's incident record until it is complete or `wait` runs out.
int follow(const agent::Config& config, const std::string& id, double wait_seconds) {
    const agent::IncidentLog log(config.agent.state_dir, config.agent.max_incidents);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
    for (;;) {
        auto record = log.find(id);
        if (record && (record->complete || std::chrono::steady_clock::now() >= deadline)) {
            printRecord(*record);
            if (!record->complete) {
                std::cout << "(still running after " << wait_seconds << "s; follow it with `rollguard incidents -c "
                          << config.path << " " << id << "`)\n";
            }
            return outcomeOf(*record);
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            std::cout << "incident " << id << " started; its record is not readable here (" << log.directory()
                      << ")\n";
            return kExitOk;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{100});
    }
}

}  // namespace

std::string jsonObject(std::initializer_list<std::pair<const char*, std::string>> fields) {
    agent::JsonWriter w;
    w.beginObject();
    for (const auto& [k, v] : fields) {
        w.key(k).value(v);
    }
    w.endObject();
    return w.str() + "\n";
}

exporters::AdminApi adminApiFor(std::function<std::shared_ptr<agent::Daemon>()> current,
                                std::shared_ptr<const agent::AdminToken> token) {
    exporters::AdminApi api;
    api.token = std::move(token);
    api.rollback = [current](const std::string& body) {
        std::string error;
        const auto request = agent::parseAdminRequest(body, error);
        if (!request) {
            return exporters::AdminApi::Reply{400, jsonObject({{"error", error}})};
        }
        const auto id = current()->rollback(request->reason, request->rule, error);
        if (!id) {
            return exporters::AdminApi::Reply{409, jsonObject({{"error", error}})};
        }
        return exporters::AdminApi::Reply{202, jsonObject({{"incident_id", *id}, {"status", "running"}})};
    };
    api.rearm = [current](const std::string&) {
        const auto daemon = current();
        const auto done = daemon->requestRearm();
        const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(3 * daemon->config().agent.tick) +
                           std::chrono::seconds{5};
        if (done.wait_for(limit) != std::future_status::ready) {
            return exporters::AdminApi::Reply{504, jsonObject({{"error", "rearm queued; the tick loop did not apply "
                                                                         "it in time (it will)"}})};
        }
        return exporters::AdminApi::Reply{200, jsonObject({{"status", "rearmed"}})};
    };
    api.rollout = [current](const std::string& name, const std::string& body) {
        const auto daemon = current();
        if (!daemon->config().rollout) {
            return exporters::AdminApi::Reply{
                404, jsonObject({{"error", "no progressive rollout: the configuration has no [rollout] section"}})};
        }
        const auto command = agent::parseRolloutCommand(name);
        std::string error;
        const auto request = agent::parseAdminRequest(body, error);
        if (!command || !request || !request->rule.empty()) {
            return exporters::AdminApi::Reply{
                400, jsonObject({{"error", !command   ? "unknown rollout command '" + name + "'"
                                           : !request ? error
                                                      : std::string("'rule' does not apply to rollout commands")}})};
        }
        const auto done = daemon->requestRollout(*command, request->reason);
        const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(3 * daemon->config().agent.tick) +
                           std::chrono::seconds{5};
        if (done.wait_for(limit) != std::future_status::ready) {
            return exporters::AdminApi::Reply{
                504, jsonObject({{"error", "the command is queued; the tick loop did not apply it in time (it will)"}})};
        }
        const auto& result = done.get();
        agent::JsonWriter w;
        w.beginObject();
        w.key("ok").value(result.ok);
        if (!result.ok) {
            w.key("error").value(result.message);
            w.endObject();
            return exporters::AdminApi::Reply{409, w.str() + "\n"};
        }
        w.key("message").value(result.message);
        w.key("command").value(name);
        w.key("rollout");
        if (const auto rollout = daemon->snapshot().rollout) {
            w.raw(exporters::renderRolloutJson(*rollout, 20));
        } else {
            w.null();
        }
        w.endObject();
        return exporters::AdminApi::Reply{200, w.str() + "\n"};
    };
    return api;
}

int runRollback(const agent::Config& config, const RollbackArgs& args) {
    std::optional<agent::StateDirLock> lock;
    std::string holder;
    const auto via = route(config, lock, holder);
    if (!via) {
        return kExitRuntime;
    }
    if (*via == Route::Daemon) {
        agent::JsonWriter w;
        w.beginObject().key("reason").value(args.reason).key("rule").value(args.rule).endObject();
        const auto response = callDaemon(config, holder, "/api/v1/rollback", w.str());
        if (!response) {
            return kExitRuntime;
        }
        if (response->status != 202) {
            std::cerr << "rollguard: the daemon refused the rollback (HTTP " << response->status
                      << "): " << response->body;
            return response->status == 409 || response->status == 400 ? kExitUsage : kExitRuntime;
        }
        const auto start = response->body.find("\"incident_id\":\"");
        const auto end = start == std::string::npos ? start : response->body.find('"', start + 15);
        const std::string id = end == std::string::npos ? std::string() : response->body.substr(start + 15, end - start - 15);
        std::cout << "rollback started by the running daemon (" << holder << "): incident " << id << "\n";
        return follow(config, id, args.wait_seconds);
    }
    // No daemon: act here, through the same daemon code (incident record, hooks in
    // order, resume of anything a crashed daemon left), with nothing tailed or judged.
    rules::SystemClock clock;
    agent::Daemon daemon(config, clock);
    std::string error;
    const auto id = daemon.rollback(args.reason, args.rule, error);
    if (!id) {
        std::cerr << "rollguard: " << error << "\n";
        daemon.stopWithoutSaving();
        return kExitUsage;
    }
    daemon.waitForHooks();
    daemon.stopWithoutSaving();
    if (!config.agent.state_dir.empty()) {
        if (const auto record = agent::IncidentLog(config.agent.state_dir, config.agent.max_incidents).find(*id)) {
            printRecord(*record);
            return outcomeOf(*record);
        }
    }
    int rc = kExitOk;
    const auto messages = daemon.lastHookMessages();  // whole: this is the operator's terminal
    for (const auto& h : daemon.snapshot().hooks) {
        if (h.ok + h.failed > 0) {
            const auto m = messages.find(h.name);
            std::cout << "  " << (h.failed > 0 ? "failed" : "ok") << "  " << h.name << ": "
                      << (m != messages.end() ? m->second : h.last_message) << "\n";
            rc = h.failed > 0 ? kExitRuntime : rc;
        }
    }
    return rc;
}

int runRearm(const agent::Config& config) {
    std::optional<agent::StateDirLock> lock;
    std::string holder;
    const auto via = route(config, lock, holder);
    if (!via) {
        return kExitRuntime;
    }
    if (*via == Route::Daemon) {
        const auto response = callDaemon(config, holder, "/api/v1/rearm", "{}");
        if (!response) {
            return kExitRuntime;
        }
        if (response->status != 200) {
            std::cerr << "rollguard: rearm failed (HTTP " << response->status << "): " << response->body;
            return kExitRuntime;
        }
        std::cout << "rearmed by the running daemon (" << holder << "): the next critical breach rolls back again\n";
        return kExitOk;
    }
    std::string message;
    const bool ok = agent::rearmOffline(config, message);
    (ok ? std::cout : std::cerr) << (ok ? "" : "rollguard: ") << message << "\n";
    return ok ? kExitOk : kExitRuntime;
}

int runIncidents(const agent::Config& config, const std::string& id, bool json) {
    if (config.agent.state_dir.empty()) {
        std::cerr << "rollguard: no agent.state_dir configured: incident records are kept there\n";
        return kExitUsage;
    }
    const agent::IncidentLog log(config.agent.state_dir, config.agent.max_incidents);
    if (!id.empty()) {
        const auto record = log.find(id);
        if (!record) {
            std::cerr << "rollguard: no incident " << id << " (or the prefix is ambiguous) in " << log.directory()
                      << "\n";
            return kExitRuntime;
        }
        if (json) {
            std::cout << agent::incidentToJson(*record);
        } else {
            printRecord(*record);
        }
        return kExitOk;
    }
    std::vector<std::string> problems;
    const auto records = log.list(&problems);
    for (const auto& p : problems) {
        std::cerr << "rollguard: skipped " << p << "\n";
    }
    if (json) {
        std::cout << "[";
        for (std::size_t i = 0; i < records.size(); ++i) {
            std::string one = agent::incidentToJson(records[i]);
            one.pop_back();  // newline
            std::cout << (i ? "," : "") << one;
        }
        std::cout << "]\n";
        return kExitOk;
    }
    if (records.empty()) {
        std::cout << "no incidents in " << log.directory() << "\n";
        return kExitOk;
    }
    std::cout << fmt::format("{:<22} {:<25} {:<7} {:<24} {:>10}  {}\n", "ID", "OPENED", "KIND", "RULE", "VALUE",
                             "HOOKS");
    for (const auto& r : records) {
        std::size_t ok = 0, failed = 0, left = 0;
        for (const auto& h : r.hooks) {
            ok += h.status == agent::HookStepStatus::Ok || h.status == agent::HookStepStatus::Skipped ? 1 : 0;
            failed += h.status == agent::HookStepStatus::Failed ? 1 : 0;
            left += h.status == agent::HookStepStatus::Pending || h.status == agent::HookStepStatus::Running ? 1 : 0;
        }
        std::string hooks = fmt::format("{} ok", ok);
        if (failed > 0) {
            hooks += fmt::format(", {} FAILED", failed);
        }
        if (left > 0) {
            hooks += fmt::format(", {} not run yet", left);
        }
        std::cout << fmt::format("{:<22} {:<25} {:<7} {:<24} {:>10}  {}\n", r.id, agent::formatRfc3339(r.opened), r.kind,
                                 r.event.rule, shortValue(r.event), hooks);
    }
    return kExitOk;
}

namespace {

/// The rollout state saved in <state_dir>/rollout.json, read without a daemon.
int printSavedRollout(const agent::Config& config, const RolloutArgs& args, const std::string& note) {
    if (config.agent.state_dir.empty()) {
        std::cerr << "rollguard: no agent is running and no agent.state_dir is configured: the rollout's state "
                     "lives only in a running agent\n";
        return kExitRuntime;
    }
    agent::StatusSnapshot::Rollout status;
    std::string message;
    switch (agent::loadSavedRollout(config, status, message)) {
        case agent::SavedRollout::Missing:
            std::cout << (args.json ? std::string("null") : "rollout: not started yet (" + message + ") " + note)
                      << "\n";
            return kExitOk;
        case agent::SavedRollout::Refused:
            std::cerr << "rollguard: " << message << "\n";
            return kExitRuntime;
        case agent::SavedRollout::Loaded:
            break;
    }
    if (args.json) {
        std::cout << exporters::renderRolloutJson(status, SIZE_MAX) << "\n";
    } else {
        std::cout << exporters::renderRolloutText(status, rules::SystemClock{}.now(), 10) << note << "\n";
    }
    return kExitOk;
}

}  // namespace

int runRollout(const agent::Config& config, const RolloutArgs& args) {
    if (!config.rollout) {
        std::cerr << "rollguard: " << config.path << " has no [rollout] section: there is no progressive rollout\n";
        return kExitUsage;
    }
    std::optional<agent::StateDirLock> lock;
    std::string holder;
    const bool has_state_dir = !config.agent.state_dir.empty();
    const auto via = route(config, lock, holder);
    if (!via) {
        return kExitRuntime;
    }
    // Without a state_dir there is no lock to tell: ask the listener whether an agent answers.
    const bool daemon = *via == Route::Daemon || (!has_state_dir && !config.agent.listen.empty());
    if (holder.empty()) {
        holder = "at " + config.agent.listen;
    }
    if (args.action == "status") {
        if (!daemon) {
            return printSavedRollout(config, args, "(agent not running)");
        }
        std::string note;
        if (const auto to = daemonEndpoint(config, holder, false)) {
            const auto response = agent::adminGet(*to, args.json ? "/api/v1/rollout" : "/api/v1/rollout?format=text",
                                                  std::chrono::seconds{10});
            if (response.status == 200) {
                std::cout << response.body;
                return kExitOk;
            }
            if (response.status == 404) {
                std::cerr << "rollguard: the running agent (" << holder
                          << ") has no [rollout] in its configuration (reload it?)\n";
                return kExitUsage;
            }
            note = "(the running agent did not answer: " +
                   (response.status == 0 ? response.error : "HTTP " + std::to_string(response.status)) +
                   "; state as last saved)";
        } else {
            note = "(the running agent cannot be reached; state as last saved)";
        }
        if (!has_state_dir) {
            std::cerr << "rollguard: no agent answers at " << config.agent.listen << ": " << note << "\n";
            return kExitRuntime;
        }
        return printSavedRollout(config, args, note);
    }
    if (!agent::parseRolloutCommand(args.action)) {
        std::cerr << "rollguard: unknown rollout action '" << args.action
                  << "' (status, pause, resume, promote, abort)\n";
        return kExitUsage;
    }
    if (!daemon) {
        std::cerr << "rollguard: no rollguard is running on " << config.agent.state_dir << "; start it first\n";
        return kExitRuntime;
    }
    agent::JsonWriter w;
    w.beginObject().key("reason").value(args.reason).endObject();
    const auto response = callDaemon(config, holder, "/api/v1/rollout/" + args.action, w.str());
    if (!response) {
        return kExitRuntime;
    }
    if (response->status == 200) {
        if (args.json) {
            std::cout << response->body;
        } else {
            std::cout << "rollout " << args.action << ": "
                      << agent::jsonStringMember(response->body, "message").value_or("done") << "\n";
        }
        return kExitOk;
    }
    const std::string why = agent::jsonStringMember(response->body, "error").value_or(response->body);
    if (response->status == 409) {
        std::cerr << "rollguard: rollout " << args.action << " refused: " << why << "\n";
        return kExitRuntime;
    }
    if (response->status == 404) {
        std::cerr << "rollguard: the running agent (" << holder << "): " << why << "\n";
        return kExitUsage;
    }
    std::cerr << "rollguard: rollout " << args.action << " failed (HTTP " << response->status << "): " << why << "\n";
    return kExitRuntime;
}

}  // namespace rollguard::cli
