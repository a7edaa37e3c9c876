// The gate's and /readyz's verdicts from a snapshot (exporters::renderGate, isReady), and
// the listener answering them on 127.0.0.1 before and after the first evaluation.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "http_client.h"
#include "rollguard/exporters/http_server.h"

using namespace rollguard;
using namespace std::chrono_literals;

namespace {

agent::StatusSnapshot::Rule rule(const std::string& name, const std::string& severity, rules::AlertState state) {
    agent::StatusSnapshot::Rule r;
    r.name = name;
    r.severity = severity;
    r.comparison = "above";
    r.threshold = 0.05;
    r.state = state;
    return r;
}

agent::StatusSnapshot evaluated() {
    agent::StatusSnapshot s;
    s.tick = 1s;
    s.started = std::chrono::system_clock::now() - 10s;
    s.last_tick = rules::TimePoint{} + std::chrono::seconds{1'790'000'000};
    s.ticks = 3;
    s.rules.push_back(rule("errors", "critical", rules::AlertState::Inactive));
    s.rules.push_back(rule("slow", "warning", rules::AlertState::Firing));
    return s;
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("the gate is shut before the first evaluation and readiness waits for it", "[exporters][gate]") {
    auto s = evaluated();
    s.ticks = 0;
    s.last_tick.reset();
    CHECK_FALSE(exporters::isReady(s));
    const auto r = exporters::renderGate(s);
    CHECK(r.status == 503);
    CHECK(has(r.json, "\"healthy\":false,\"ready\":false,\"reason\":\"the rules have not been evaluated yet\""));
    CHECK(has(r.json, "\"evaluated_at\":null"));
    CHECK(has(r.json, "\"blocking\":[]"));
    CHECK(exporters::isReady(evaluated()));
}

TEST_CASE("the gate covers critical rules and ignores a firing warning", "[exporters][gate]") {
    auto s = evaluated();
    auto r = exporters::renderGate(s);
    CHECK(r.status == 200);
    CHECK(r.json == "{\"healthy\":true,\"ready\":true,\"reason\":\"no rule pending or firing\","
                    "\"evaluated_at\":\"2026-09-21T14:13:20.000Z\",\"not_ready\":[],\"rules_checked\":1,\"blocking\":[]}\n");

    s.rules[0].state = rules::AlertState::Pending;
    s.rules[0].value = 0.25;
    s.rules[0].since = rules::TimePoint{} + std::chrono::seconds{1'789'999'990};
    r = exporters::renderGate(s);
    CHECK(r.status == 503);
    CHECK(has(r.json, "\"blocking\":[{\"rule\":\"errors\",\"group\":\"\",\"severity\":\"critical\",\"state\":\"pending\","
                      "\"value\":0.25,\"threshold\":0.05,\"comparison\":\"above\",\"since\":\"2026-09-21T14:13:10.000Z\"}]"));
    CHECK(has(r.json, "\"reason\":\"1 rule(s) pending or firing\""));

    s.rules[0].state = rules::AlertState::Firing;
    s.rules[0].value.reset();
    r = exporters::renderGate(s);
    CHECK(r.status == 503);
    CHECK(has(r.json, "\"state\":\"firing\",\"value\":null"));

    s.rules[0].state = rules::AlertState::Resolved;
    CHECK(exporters::renderGate(s).status == 200);
}

TEST_CASE("every group of a grouped critical rule can shut the gate", "[exporters][gate]") {
    auto s = evaluated();
    s.rules[0].group = "route=/checkout";
    auto other = s.rules[0];
    other.group = "route=/cart";
    other.state = rules::AlertState::Firing;
    s.rules.push_back(other);
    const auto r = exporters::renderGate(s);
    CHECK(r.status == 503);
    CHECK(has(r.json, "\"rules_checked\":2"));
    CHECK(has(r.json, "\"rule\":\"errors\",\"group\":\"route=/cart\""));
    CHECK_FALSE(has(r.json, "route=/checkout"));
}

TEST_CASE("the gate restricted to named rules takes them whatever their severity", "[exporters][gate]") {
    const auto s = evaluated();
    exporters::GateQuery q;
    q.rules = {"slow"};
    auto r = exporters::renderGate(s, q);
    CHECK(r.status == 503);
    CHECK(has(r.json, "\"rule\":\"slow\""));

    q.always_200 = true;
    r = exporters::renderGate(s, q);
    CHECK(r.status == 200);
    CHECK(has(r.json, "\"healthy\":false"));

    q = {};
    q.rules = {"errors"};
    CHECK(exporters::renderGate(s, q).status == 200);

    q.rules = {"errors", "nope", "nope"};
    r = exporters::renderGate(s, q);
    CHECK(r.status == 400);
    CHECK(has(r.json, "no rule named nope in the config"));
}

TEST_CASE("the listener answers /readyz and /api/v1/gate with their verdicts", "[exporters][gate]") {
    auto snapshot = evaluated();
    snapshot.ticks = 0;
    exporters::HttpServer server("127.0.0.1:0", [&snapshot] { return snapshot; });
    auto r = testing::httpGet(server.port(), "/readyz");
    CHECK(r.status == 503);
    CHECK(r.body == "not ready: the rules have not been evaluated yet\n");
    CHECK(testing::httpGet(server.port(), "/api/v1/gate").status == 503);

    // The lambda reads `snapshot` at each request; no request is in flight here.
    snapshot = evaluated();
    CHECK(testing::httpGet(server.port(), "/readyz").status == 200);
    r = testing::httpGet(server.port(), "/api/v1/gate");
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(testing::httpGet(server.port(), "/api/v1/gate?rules=slow").status == 503);
    CHECK(testing::httpGet(server.port(), "/api/v1/gate?rules=slow&always_200=1").status == 200);
    CHECK(testing::httpGet(server.port(), "/api/v1/gate?rules=%20slow%20,%20errors").status == 503);
    CHECK(testing::httpGet(server.port(), "/api/v1/gate?rules=sl%ZZ").status == 400);
    r = testing::httpRequest(server.port(), "POST", "/api/v1/gate", {"Content-Type: application/json"},
                             std::string(10'000, 'x'));
    CHECK(r.status == 200);
    CHECK(testing::httpRequest(server.port(), "PUT", "/api/v1/gate", {}, "").status == 405);
}

namespace {

agent::StatusSnapshot::Hook hook(const std::string& name, bool gating, bool ready,
                                 std::vector<std::string> problems = {}) {
    agent::StatusSnapshot::Hook h;
    h.name = name;
    h.type = "script";
    h.gating = gating;
    h.ready = ready;
    h.problems = std::move(problems);
    return h;
}

}  // namespace

TEST_CASE("a gating hook that fails its preflight makes the agent not ready and shuts the gate",
          "[exporters][gate][preflight]") {
    auto s = evaluated();
    s.hooks.push_back(hook("note", false, false, {"not executable"}));  // does not gate
    s.hooks.push_back(hook("restart", true, true));
    CHECK(exporters::isReady(s));
    CHECK(exporters::notReadyReasons(s).empty());
    CHECK(exporters::renderGate(s).status == 200);

    s.preflight_checked = false;  // started, first pass not done: a gating hook is not known to work
    CHECK(exporters::notReadyReasons(s) == std::vector<std::string>{"the hooks' preflight has not finished yet"});
    s.preflight_checked = true;

    s.hooks.back() = hook("restart", true, false, {"command /x (mode 644) is not executable: chmod +x /x"});
    CHECK_FALSE(exporters::isReady(s));
    CHECK(exporters::notReadyReasons(s) ==
          std::vector<std::string>{"hook restart cannot work: command /x (mode 644) is not executable: chmod +x /x"});
    const auto r = exporters::renderGate(s);
    CHECK(r.status == 503);
    CHECK(has(r.json, "\"healthy\":false,\"ready\":false,\"reason\":\"hook restart cannot work: command /x"));
    CHECK(has(r.json, "\"not_ready\":[\"hook restart cannot work: command /x (mode 644)"));

    const auto status = exporters::renderStatusJson(s);
    CHECK(has(status, "\"ready\":false,\"not_ready\":[\"hook restart cannot work"));
    CHECK(has(status, "\"name\":\"restart\""));
    CHECK(has(status, "\"ready\":false,\"gating\":true,\"problems\":[\"command /x (mode 644) is not executable"));
    CHECK(has(status, "\"ready\":false,\"gating\":false,\"problems\":[\"not executable\"]"));

    const auto metrics = exporters::renderMetrics(s);
    CHECK(has(metrics, "# TYPE rollguard_hook_ready gauge\n"));
    CHECK(has(metrics, "# HELP rollguard_hook_ready 1 when the hook's last preflight"));
    CHECK(has(metrics, "rollguard_hook_ready{hook=\"note\"} 0\n"));
    CHECK(has(metrics, "rollguard_hook_ready{hook=\"restart\"} 0\n"));
}

TEST_CASE("/readyz lists every reason, one line each", "[exporters][gate][preflight]") {
    auto snapshot = evaluated();
    snapshot.ticks = 0;
    snapshot.hooks.push_back(hook("restart", true, false, {"first problem", "second problem"}));
    exporters::HttpServer server("127.0.0.1:0", [&snapshot] { return snapshot; });
    auto r = testing::httpGet(server.port(), "/readyz");
    CHECK(r.status == 503);
    CHECK(r.body ==
          "not ready: the rules have not been evaluated yet\n"
          "not ready: hook restart cannot work: first problem\n"
          "not ready: hook restart cannot work: second problem\n");
    snapshot = evaluated();
    snapshot.hooks.push_back(hook("restart", true, true));
    r = testing::httpGet(server.port(), "/readyz");
    CHECK(r.status == 200);
    CHECK(r.body == "ready\n");
}
