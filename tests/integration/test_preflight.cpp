// The hooks' preflight through the real binary (issue #19): `rollguard check --preflight`
// points at each broken hook's file:line:col and exits 1; `rollguard run` with a critical
// rule whose script cannot run is not ready (/readyz 503 with the reason, the status and
// the rollguard_hook_ready gauge say why) until the script is fixed and the config
// reloaded; readiness_preflight = "off" reports the problem without gating.

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <string>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "agent_config.h"
#include "agent_status.h"
#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

/// A config whose hooks (from line 19 on) are broken in every non-file way, or all fine.
std::string checkConfig(const TempDir& dir, bool broken) {
    const auto d = dir.path().string();
    return "[[source]]\n"                                                           // 1
           "name = \"app\"\n"                                                       // 2
           "type = \"json_log\"\n"                                                  // 3
           "paths = [\"" + d + "/app.log\"]\n"                                      // 4
           "error = { field = \"status\", gte = 500 }\n"                            // 5
           "\n"                                                                     // 6
           "[[rule]]\n"                                                             // 7
           "name = \"errors\"\n"                                                    // 8
           "source = \"app\"\n"                                                     // 9
           "metric = \"error_ratio\"\n"                                             // 10
           "above = 0.5\n"                                                          // 11
           "window = \"1m\"\n"                                                      // 12
           "hooks = [\"restart\", \"notify\", \"am\", \"undo\"]\n"                  // 13
           "\n"                                                                     // 14
           "[[hook]]\n"                                                             // 15
           "name = \"restart\"\n"                                                   // 16
           "type = \"script\"\n"                                                    // 17
           "command = [\"" + d + "/rollback.sh\"]\n"                                // 18
           "\n"                                                                     // 19
           "[[hook]]\n"                                                             // 20
           "name = \"notify\"\n"                                                    // 21
           "type = \"webhook\"\n"                                                   // 22
           "url = \"" + std::string(broken ? "http://nonexistent.invalid/hook" : "http://127.0.0.1:1/hook") +
           "\"\n"                                                                   // 23
           "secret_file = \"" + d + "/signing.key\"\n"                              // 24
           "\n"                                                                     // 25
           "[[hook]]\n"                                                             // 26
           "name = \"am\"\n"                                                        // 27
           "type = \"alertmanager\"\n"                                              // 28
           "url = \"http://localhost:9093\"\n"                                      // 29
           "bearer_token_env = \"" + std::string(broken ? "RG_PREFLIGHT_UNSET" : "RG_PREFLIGHT_SET") + "\"\n"  // 30
           "\n"                                                                     // 31
           "[[hook]]\n"                                                             // 32
           "name = \"undo\"\n"                                                      // 33
           "type = \"script\"\n"                                                    // 34
           "command = [\"" + std::string(broken ? "rg-no-such-command" : "true") + "\"]\n"  // 35
           "workdir = \"" + d + (broken ? "/nowhere" : "") + "\"\n";                // 36
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

/// The config of the `run` tests: a critical rule "errors" whose hook is the script
/// `<dir>/rollback.sh`, with `agent` lines added to [agent].
std::string runConfig(const TempDir& dir, std::uint16_t port, const std::string& agent = {}) {
    return errorRatioConfig(dir.path(), {.agent = "tick = \"100ms\"\nlisten = \"127.0.0.1:" + std::to_string(port) +
                                                  "\"\n" + agent,
                                         .rule = "for = \"1h\"\nhooks = [\"restart\"]\n",
                                         .tail = "[[hook]]\n"
                                                 "name = \"restart\"\n"
                                                 "type = \"script\"\n"
                                                 "command = [\"" + (dir / "rollback.sh").string() + "\"]\n"});
}

struct HookView {
    bool found = false;
    bool ready = false;
    bool gating = false;
    std::string first_problem;
};

HookView statusHook(std::uint16_t port, const std::string& name) {
    HookView out;
    const auto status = httpGet(port, "/api/v1/status");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (status.status != 200 || parser.parse(status.body).get(doc) != simdjson::SUCCESS) {
        return out;
    }
    for (auto hook : doc["hooks"]) {
        if (std::string_view(hook["name"]) != name) {
            continue;
        }
        out.found = true;
        out.ready = bool(hook["ready"]);
        out.gating = bool(hook["gating"]);
        for (auto problem : hook["problems"]) {
            out.first_problem = std::string(std::string_view(problem));
            break;
        }
    }
    return out;
}

}  // namespace

TEST_CASE("rollguard check --preflight points at every broken hook and exits 1", "[preflight][cli][integration]") {
    TempDir dir;
    writeFile(dir / "rollback.sh", "#!/bin/sh\nexit 0\n");
    REQUIRE(::chmod((dir / "rollback.sh").c_str(), 0644) == 0);
    writeFile(dir / "signing.key", "s3cret\n");
    REQUIRE(::chmod((dir / "signing.key").c_str(), 0644) == 0);
    const auto path = (dir / "broken.toml").string();
    writeFile(path, checkConfig(dir, true));

    // RG_PREFLIGHT_UNSET is not in the test's environment, so not in the child's either.
    auto [code, out] = runCommand({ROLLGUARD_BIN, "check", "--preflight", "--config", path});
    INFO(out);
    CHECK(code == 1);
    CHECK(has(out, path + ":15:1: hook restart: command " + (dir / "rollback.sh").string() + " (mode 644) is not "
                   "executable"));
    CHECK(has(out, path + ":20:1: hook notify: url 'http://nonexistent.invalid/hook': host 'nonexistent.invalid'"));
    CHECK(has(out, path + ":20:1: hook notify: signing secret file " + (dir / "signing.key").string() +
                   " is accessible by group or others (mode 644): chmod 600"));
    CHECK(has(out, path + ":26:1: hook am: bearer token: environment variable RG_PREFLIGHT_UNSET is not set"));
    CHECK(has(out, path + ":32:1: hook undo: command 'rg-no-such-command' is not found in PATH"));
    CHECK(has(out, path + ":32:1: hook undo: working directory " + (dir / "nowhere").string() + " does not exist"));
    CHECK(has(out, "preflight: 4 hooks, 0 ready, 4 not ready"));
    // Nothing was changed: the script is still not executable.
    struct stat st {};
    REQUIRE(::stat((dir / "rollback.sh").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);

    // Without --preflight the same config is only validated: exit 0.
    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "check", "--config", path});
    CHECK(code == 0);
    CHECK_FALSE(has(out, "hook restart"));

    // Fixed: exit 0.
    REQUIRE(::chmod((dir / "rollback.sh").c_str(), 0755) == 0);
    REQUIRE(::chmod((dir / "signing.key").c_str(), 0600) == 0);
    writeFile(path, checkConfig(dir, false));
    ::setenv("RG_PREFLIGHT_SET", "token", 1);
    std::tie(code, out) = runCommand({ROLLGUARD_BIN, "check", "--preflight", "--config", path});
    ::unsetenv("RG_PREFLIGHT_SET");
    INFO(out);
    CHECK(code == 0);
    CHECK(has(out, "preflight: 4 hooks, 4 ready, 0 not ready"));

    // A config error stays exit 2, before any preflight.
    writeFile(path, checkConfig(dir, false) + "bogus = 1\n");
    CHECK(runCommand({ROLLGUARD_BIN, "check", "--preflight", "--config", path}).first == 2);
}

TEST_CASE("a critical rule whose script cannot run keeps the agent not ready until fixed and reloaded",
          "[preflight][reload][integration]") {
    TempDir dir;
    writeFile(dir / "app.log", statusLines(10, 200));
    writeFile(dir / "rollback.sh", "#!/bin/sh\nexit 0\n");
    REQUIRE(::chmod((dir / "rollback.sh").c_str(), 0644) == 0);
    const ReservedPort reserved;
    const std::uint16_t port = reserved.port();
    const auto config = dir / "rollguard.toml";
    writeFile(config, runConfig(dir, port));
    RunningAgent agent(config);
    INFO(agent.stderrText());
    REQUIRE(agent.waitHealthy(port));

    // Evaluated, yet not ready: the rollback could not run. (The first preflight pass
    // runs on its own thread; until it is done the reason is that it has not finished.)
    const std::string reason = "not ready: hook restart cannot work: command " + (dir / "rollback.sh").string() +
                               " (mode 644) is not executable";
    REQUIRE(eventually([&] { return has(httpGet(port, "/readyz").body, reason); }, 10s));
    REQUIRE(eventually([&] { return agentMetric(port, "rollguard_evaluations_total").value_or(0) > 0; }, 10s));
    auto r = httpGet(port, "/readyz");
    CHECK(r.status == 503);
    CHECK(has(r.body, reason));
    const auto hook = statusHook(port, "restart");
    REQUIRE(hook.found);
    CHECK_FALSE(hook.ready);
    CHECK(hook.gating);
    CHECK(has(hook.first_problem, "chmod +x"));
    CHECK(agentMetric(port, "rollguard_hook_ready{hook=\"restart\"} ") == 0.0);
    CHECK(httpGet(port, "/api/v1/gate").status == 503);
    CHECK(has(agent.stderrText(), config.string() + ":"));
    CHECK(has(agent.stderrText(), ": hook restart: command "));

    // Fixed and reloaded: ready.
    REQUIRE(::chmod((dir / "rollback.sh").c_str(), 0755) == 0);
    agent.signal(SIGHUP);
    REQUIRE(eventually([&] { return httpGet(port, "/readyz").status == 200; }, 30s));
    CHECK(httpGet(port, "/readyz").body == "ready\n");
    CHECK(agentMetric(port, "rollguard_hook_ready{hook=\"restart\"} ") == 1.0);
    CHECK(statusHook(port, "restart").ready);
    CHECK(httpGet(port, "/api/v1/gate").status == 200);
}

TEST_CASE("readiness_preflight = \"off\" reports a broken hook without gating readiness",
          "[preflight][integration]") {
    TempDir dir;
    writeFile(dir / "app.log", statusLines(10, 200));
    writeFile(dir / "rollback.sh", "#!/bin/sh\nexit 0\n");
    REQUIRE(::chmod((dir / "rollback.sh").c_str(), 0644) == 0);
    const ReservedPort reserved;
    const std::uint16_t port = reserved.port();
    const auto config = dir / "rollguard.toml";
    writeFile(config, runConfig(dir, port, "readiness_preflight = \"off\"\n"));
    RunningAgent agent(config);
    INFO(agent.stderrText());
    REQUIRE(agent.waitHealthy(port));

    REQUIRE(eventually([&] { return httpGet(port, "/readyz").status == 200; }, 10s));
    REQUIRE(eventually([&] { return statusHook(port, "restart").first_problem != ""; }, 10s));
    const auto hook = statusHook(port, "restart");
    REQUIRE(hook.found);
    CHECK_FALSE(hook.ready);
    CHECK_FALSE(hook.gating);
    CHECK(has(hook.first_problem, "is not executable"));
    CHECK(agentMetric(port, "rollguard_hook_ready{hook=\"restart\"} ") == 0.0);
}
