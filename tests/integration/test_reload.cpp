// Reloading the config of the running binary: a broken config is refused (logged with
// file:line:col, counted, the old one keeps running); a good one is switched to with the
// unchanged rule's pending timer intact, by SIGHUP and by POST /api/v1/reload.

#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

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

std::string configText(const TempDir& dir, std::uint16_t port, bool with_warning) {
    std::string tail = "[[hook]]\n"
                       "name = \"flip\"\n"
                       "type = \"env_file\"\n"
                       "path = \"" + (dir / "app.env").string() + "\"\n"
                       "set = { CANARY = \"0\" }\n";
    if (with_warning) {
        tail += "\n[[rule]]\nname = \"traffic\"\nseverity = \"warning\"\nsource = \"app\"\nmetric = \"count\"\n"
                "above = 1000000\nwindow = \"1m\"\n";
    }
    return errorRatioConfig(dir.path(), {.agent = "tick = \"100ms\"\nlisten = \"127.0.0.1:" + std::to_string(port) +
                                                  "\"\nadmin_token_file = \"" + (dir / "admin.token").string() + "\"\n",
                                         .rule = "for = \"1h\"\nmin_samples = 5\nhooks = [\"flip\"]\n",
                                         .tail = tail});
}

struct RuleView {
    std::string state;
    std::string since;
    std::size_t rules = 0;
};

RuleView errorsRule(std::uint16_t port) {
    const auto status = httpRequest(port, "GET", "/api/v1/status", {}, "");
    RuleView out;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(status.body).get(doc) != simdjson::SUCCESS) {
        return out;
    }
    for (auto rule : doc["rules"]) {
        ++out.rules;
        if (std::string_view(rule["name"]) == "errors") {
            out.state = std::string(std::string_view(rule["state"]));
            std::string_view since;
            if (rule["since"].get(since) == simdjson::SUCCESS) {
                out.since = std::string(since);
            }
        }
    }
    return out;
}

}  // namespace

TEST_CASE("reload refuses a broken config and keeps state across a good one", "[reload][integration]") {
    TempDir dir;
    writeAdminToken(dir / "admin.token");
    writeFile(dir / "app.env", "CANARY=1\n");
    writeFile(dir / "app.log", statusLines(20, 503));
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    const auto config = dir / "rollguard.toml";
    writeFile(config, configText(dir, port, false));
    RunningAgent agent(config);
    INFO(agent.stderrText());

    // The critical rule goes pending (its `for` is an hour: it stays pending).
    REQUIRE(eventually([&] { return errorsRule(port).state == "pending"; }, 30s));
    const std::string since = errorsRule(port).since;
    REQUIRE(!since.empty());

    // A broken config: refused, with file:line:col; the old config keeps running.
    writeFile(config, configText(dir, port, false) + "\n[[rule]]\nname = \"x\"\nsource = \"nope\"\n");
    agent.signal(SIGHUP);
    // The agent logs the refusal first and counts it after: wait for the count, which
    // implies the log line (waiting for the line would race with the count).
    REQUIRE(eventually(
        [&] { return agentMetric(port, R"(rollguard_config_reloads_total{result="failure"} )") == 1.0; }, 30s));
    const std::string err = agent.stderrText();
    REQUIRE(err.find("reload (SIGHUP) refused") != std::string::npos);
    const auto at = err.find(config.string() + ":");
    REQUIRE(at != std::string::npos);
    CHECK(err.find("unknown source", at) != std::string::npos);
    auto metrics = httpRequest(port, "GET", "/metrics", {}, "").body;
    CHECK(metrics.find("rollguard_config_reloads_total{result=\"failure\"} 1") != std::string::npos);
    CHECK(metrics.find("rollguard_config_last_reload_successful 0") != std::string::npos);
    CHECK(errorsRule(port).state == "pending");

    const std::vector<std::string> auth{adminAuthorization()};
    auto reply = httpRequest(port, "POST", "/api/v1/reload", auth, "");
    CHECK(reply.status == 400);
    CHECK(reply.body.find("unknown source") != std::string::npos);
    CHECK(httpRequest(port, "POST", "/api/v1/reload", {}, "").status == 401);

    // A good config with one more rule: the unchanged rule keeps its pending timer.
    writeFile(config, configText(dir, port, true));
    reply = httpRequest(port, "POST", "/api/v1/reload", auth, "");
    CHECK(reply.status == 200);
    const auto after = errorsRule(port);
    CHECK(after.rules == 2);
    CHECK(after.state == "pending");
    CHECK(after.since == since);
    metrics = httpRequest(port, "GET", "/metrics", {}, "").body;
    CHECK(metrics.find("rollguard_config_reloads_total{result=\"success\"} 1") != std::string::npos);
    CHECK(metrics.find("rollguard_config_last_reload_successful 1") != std::string::npos);

    // And by SIGHUP, back to one rule.
    writeFile(config, configText(dir, port, false));
    agent.signal(SIGHUP);
    REQUIRE(eventually([&] { return errorsRule(port).rules == 1; }, 30s));
    CHECK(errorsRule(port).since == since);
    CHECK(readFile(dir / "app.env") == "CANARY=1\n");  // nothing fired: `for` is an hour

    agent.signal(SIGTERM);
    CHECK(agent.wait(20s) == 0);
}
