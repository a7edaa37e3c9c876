// The progressive rollout ([rollout], issue #9) end to end with the real binary: a
// healthy workload promoted 5 -> 25 -> 50 -> 100 -> complete through an env-file hook,
// a critical breach at 50 % stepped back to 25 % and promoted again after the cooldown,
// and `rollguard rollout status|pause|promote|abort` against the running agent, across a
// restart. Durations are the production ones played with `--time-scale 60`.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "agent_config.h"
#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kTimeScale = "60";

struct RolloutSetup {
    std::string stages = "[5, 25, 50, 100]";
    std::string hold = "\"3m\"";  // 3 s at --time-scale 60
    std::string on_critical = "previous";
    std::string cooldown = "6m";
    bool with_token = false;
};

/// One JSON-log source, a critical error-ratio rule (window 1m, for 30s: 1 s and 0.5 s
/// scaled) and the rollout, whose hook writes ROLLOUT_PERCENT into service.env and whose
/// rollback hook writes ROLLED_BACK into notify.env.
std::string configText(const TempDir& dir, std::uint16_t port, const RolloutSetup& r) {
    const std::string d = dir.path().string();
    std::string text = "[agent]\n"
                       "tick = \"100ms\"\n"
                       "listen = \"127.0.0.1:" + std::to_string(port) + "\"\n"
                       "state_dir = \"" + d + "/state\"\n"
                       "checkpoint_interval = \"200ms\"\n";
    if (r.with_token) {
        text += "admin_token_file = \"" + d + "/token\"\n";
    }
    text += "\n[[source]]\n"
            "name = \"web\"\n"
            "type = \"json_log\"\n"
            "paths = [\"" + d + "/app.log\"]\n"
            "error = { field = \"status\", gte = 500 }\n"
            "\n[[rule]]\n"
            "name = \"errors\"\n"
            "source = \"web\"\n"
            "severity = \"critical\"\n"
            "metric = \"error_ratio\"\n"
            "above = 0.1\n"
            "window = \"1m\"\n"
            "for = \"30s\"\n"
            "min_samples = 10\n"
            "\n[[hook]]\n"
            "name = \"percent\"\n"
            "type = \"env_file\"\n"
            "path = \"" + d + "/service.env\"\n"
            "set = { ROLLOUT_PERCENT = \"{{rollout_percent}}\" }\n"
            "\n[[hook]]\n"
            "name = \"notify\"\n"
            "type = \"env_file\"\n"
            "path = \"" + d + "/notify.env\"\n"
            "set = { ROLLED_BACK = \"{{rollout_percent}}\" }\n"
            "\n[rollout]\n"
            "stages = " + r.stages + "\n"
            "hold = " + r.hold + "\n"
            "on_critical = \"" + r.on_critical + "\"\n"
            "cooldown = \"" + r.cooldown + "\"\n"
            "hooks = [\"percent\"]\n"
            "rollback_hooks = [\"notify\"]\n";
    return text;
}

std::string lines(int n, int errors) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += "{\"status\":" + std::to_string(i < errors ? 500 : 200) + "}\n";
    }
    return out;
}

std::string envWith(int percent) {
    return "# written by the deploy\nROLLOUT_PERCENT=" + std::to_string(percent) + "\n";
}

struct Scenario {
    TempDir dir;
    ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    std::uint16_t port = reserved.port();
    fs::path config = dir / "rollguard.toml";

    explicit Scenario(const RolloutSetup& setup) {
        writeFile(dir / "app.log", "");
        writeFile(dir / "service.env", envWith(0));
        writeFile(dir / "notify.env", "ROLLED_BACK=no\n");
        writeAdminToken(dir / "token");
        writeFile(config, configText(dir, port, setup));
    }
    std::unique_ptr<RunningAgent> start() {
        auto agent = std::make_unique<RunningAgent>(config, std::vector<std::string>{"--time-scale", kTimeScale});
        return agent;
    }
    std::string env() const { return readFile(dir / "service.env"); }
    std::string metrics() const { return httpGet(port, "/metrics").body; }
    bool atPercent(int percent) const {
        return env() == envWith(percent) &&
               metrics().find("rollguard_rollout_stage_percent " + std::to_string(percent) + "\n") !=
                   std::string::npos;
    }
    /// Waits for `done` while appending `errors` of every 20 lines to the log every poll.
    template <typename Predicate>
    bool feedUntil(Predicate done, int errors, std::chrono::milliseconds timeout) {
        return eventually(
            [&] {
                appendFile(dir / "app.log", lines(20, errors));
                return done();
            },
            timeout);
    }
    std::pair<int, std::string> cli(std::vector<std::string> args) const {
        std::vector<std::string> argv{ROLLGUARD_BIN, "rollout"};
        argv.insert(argv.end(), args.begin(), args.end());
        argv.push_back("-c");
        argv.push_back(config.string());
        return runCommand(argv);
    }
};

}  // namespace

TEST_CASE("rollout e2e: a healthy service is promoted 5 25 50 100 then complete", "[integration][rollout]") {
    Scenario s(RolloutSetup{});
    auto agent = s.start();
    INFO(agent->stderrText());
    REQUIRE(agent->waitHealthy(s.port));
    for (const int percent : {5, 25, 50, 100}) {
        INFO("stage " << percent);
        REQUIRE(s.feedUntil([&] { return s.atPercent(percent); }, 0, 20s));
    }
    REQUIRE(s.feedUntil(
        [&] { return s.metrics().find("rollguard_rollout_phase{phase=\"complete\"} 1\n") != std::string::npos; }, 0,
        20s));
    const auto status = httpGet(s.port, "/api/v1/rollout");
    REQUIRE(status.status == 200);
    CHECK(status.body.find("\"phase\":\"complete\"") != std::string::npos);
    CHECK(status.body.find("\"promotions\":4") != std::string::npos);
    CHECK(status.body.find("\"rollbacks_total\":0") != std::string::npos);
    CHECK(readFile(s.dir / "notify.env") == "ROLLED_BACK=no\n");
    CHECK(s.env() == envWith(100));
    struct stat st {};
    REQUIRE(::stat((s.dir / "state" / "rollout.json").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(agent->stderrText().find("rollout: promote 50% -> 100%: hold 3s passed with the gate quiet") !=
          std::string::npos);
}

TEST_CASE("rollout e2e: errors at 50 percent step back to 25, cool down, then promote again once healthy",
          "[integration][rollout]") {
    Scenario s(RolloutSetup{});
    auto agent = s.start();
    INFO(agent->stderrText());
    REQUIRE(agent->waitHealthy(s.port));
    REQUIRE(s.feedUntil([&] { return s.atPercent(50); }, 0, 30s));

    // Half the requests fail: the critical rule fires and the rollout steps back.
    REQUIRE(s.feedUntil([&] { return s.atPercent(25); }, 10, 20s));
    CHECK(eventually([&] { return readFile(s.dir / "notify.env") == "ROLLED_BACK=25\n"; }, 10s));
    const auto metrics = s.metrics();
    CHECK(metrics.find("rollguard_rollout_rollbacks_total 1\n") != std::string::npos);
    CHECK(metrics.find("rollguard_rollout_phase{phase=\"cooldown\"} 1\n") != std::string::npos);
    CHECK(agent->stderrText().find("rollout: rollback 50% -> 25%: rule errors fired") != std::string::npos);

    // Healthy again: after the cooldown (6 s) and a full hold (3 s) at 25 %, 50 % again.
    REQUIRE(s.feedUntil([&] { return s.atPercent(50); }, 0, 30s));
    const auto status = httpGet(s.port, "/api/v1/rollout").body;
    CHECK(status.find("\"rollbacks_total\":1") != std::string::npos);
    CHECK(status.find("\"action\":\"rollback\"") != std::string::npos);
}

TEST_CASE("rollout e2e: rollguard rollout status pause promote abort through the running agent and a restart",
          "[integration][rollout]") {
    RolloutSetup setup;
    setup.stages = "[5, 25, 100]";
    setup.hold = "\"1h\"";  // no promotion but by hand
    setup.with_token = true;
    Scenario s(setup);
    auto agent = s.start();
    INFO(agent->stderrText());
    REQUIRE(agent->waitHealthy(s.port));
    REQUIRE(s.feedUntil([&] { return s.atPercent(5); }, 0, 20s));

    auto [rc, out] = s.cli({"status"});
    INFO(out);
    CHECK(rc == 0);
    CHECK(out.find("rollout: 5% (stage 1 of 3), holding") != std::string::npos);

    std::tie(rc, out) = s.cli({"pause", "--reason", "looking at dashboards"});
    CHECK(rc == 0);
    CHECK(out.find("rollout pause: ") != std::string::npos);
    std::tie(rc, out) = s.cli({"pause"});
    CHECK(rc == 1);  // already paused: the controller's refusal
    CHECK(out.find("refused") != std::string::npos);
    std::tie(rc, out) = s.cli({"status", "--json"});
    CHECK(rc == 0);
    CHECK(out.find("\"paused\":true") != std::string::npos);
    CHECK(out.find("\"reason\":\"looking at dashboards\"") != std::string::npos);

    std::tie(rc, out) = s.cli({"promote", "--reason", "dashboards fine"});
    CHECK(rc == 0);
    CHECK(eventually([&] { return s.atPercent(25); }, 10s));

    // A restart mid stage keeps the stage (and writes nothing new to the service).
    agent->process().signal(SIGTERM);
    REQUIRE(agent->process().wait(20s) == 0);
    std::tie(rc, out) = s.cli({"status"});
    CHECK(rc == 0);
    CHECK(out.find("rollout: 25% (stage 2 of 3), holding") != std::string::npos);
    CHECK(out.find("(agent not running)") != std::string::npos);
    std::tie(rc, out) = s.cli({"promote"});
    CHECK(rc == 1);
    CHECK(out.find("no rollguard is running on") != std::string::npos);
    agent = s.start();
    REQUIRE(agent->waitHealthy(s.port));
    REQUIRE(eventually([&] { return s.atPercent(25); }, 10s));
    const auto history = httpGet(s.port, "/api/v1/rollout").body;
    CHECK(history.find("\"stage\":1,\"percent\":25") != std::string::npos);

    std::tie(rc, out) = s.cli({"abort", "--reason", "bad build"});
    CHECK(rc == 0);
    CHECK(eventually([&] { return s.atPercent(0); }, 10s));
    CHECK(eventually([&] { return readFile(s.dir / "notify.env") == "ROLLED_BACK=0\n"; }, 10s));
    std::tie(rc, out) = s.cli({"promote"});
    CHECK(rc == 1);  // aborted: only resume moves it
    std::tie(rc, out) = s.cli({"status"});
    CHECK(out.find("aborted") != std::string::npos);

    // The API itself: a wrong token, and no token at all.
    auto r = httpRequest(s.port, "POST", "/api/v1/rollout/resume", {"Authorization: Bearer nope"}, "{}");
    CHECK(r.status == 401);
    r = httpRequest(s.port, "POST", "/api/v1/rollout/resume", {adminAuthorization()},
                    "{\"reason\":\"fixed\"}");
    CHECK(r.status == 200);
    CHECK(r.body.find("\"ok\":true") != std::string::npos);
    r = httpRequest(s.port, "POST", "/api/v1/rollout/resume", {adminAuthorization()}, "");
    CHECK(r.status == 409);
    CHECK(r.body.find("\"ok\":false") != std::string::npos);
}

TEST_CASE("rollout e2e: the CLI exits 2 on a config without [rollout]", "[integration][rollout]") {
    TempDir dir;
    writeFile(dir / "plain.toml", "[agent]\nlisten = \"\"\n\n[[source]]\nname = \"web\"\ntype = \"json_log\"\n"
                                  "paths = [\"" + (dir / "app.log").string() + "\"]\n");
    const auto [rc, out] = runCommand({ROLLGUARD_BIN, "rollout", "status", "-c", (dir / "plain.toml").string()});
    INFO(out);
    CHECK(rc == 2);
    CHECK(out.find("no [rollout] section") != std::string::npos);
    const auto [help_rc, help] = runCommand({ROLLGUARD_BIN, "rollout", "--help"});
    CHECK(help_rc == 0);
    CHECK(help.find("Exit codes") != std::string::npos);
}
