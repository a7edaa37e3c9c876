// Scenario test of the Apex query-router guide (docs/guides/query-router.md): the real
// binary runs the SHIPPED config/examples/query-router.toml unchanged, its paths and URLs
// pointed at a temp dir and loopback receivers through the environment, its timings
// divided by --time-scale 60 ("5m" windows play in 5 s, "for 1m" in 1 s, the stats are
// scraped every 250 ms). The router is played by this test: a thread appends query lines
// (and other log lines the rules must ignore) to apex-memory.log, one HttpReceiver serves
// the online-learning stats as JSON, another receives the alerts.
//
// One run: healthy traffic does nothing; a near-miss (p99 0.95 s, just under 1 s, held
// for several times `for`) does nothing; a queue of 800 (> 500) sends the warning and
// leaves the flag alone; p99 1.4 s (above 1 s, under 2x the 0.8 s baseline) sets the
// flag's rollout_percentage to 0 and sends the critical alert. A second run with a lower
// baseline (0.3 s) shows the 2x-baseline rule acting on a p99 under 1 s.
// ROLLGUARD_KEEP_TEST_DIRS=1 keeps the temp dir, with the agent's log in rollguard.stderr.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "agent_status.h"
#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"
#include "ticker.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

constexpr const char* kConfig = ROLLGUARD_SOURCE_DIR "/config/examples/query-router.toml";

// The flag as the router's FeatureFlagManager would dump it (Stage 4.2, 25 %).
const std::string kFlagsBefore =
    "{\n"
    "  \"flags\": {\n"
    "    \"phase4_online_learning\": {\n"
    "      \"description\": \"Enable Phase 4 online learning router\",\n"
    "      \"default_enabled\": false,\n"
    "      \"rollout_percentage\": 25,\n"
    "      \"whitelist\": [\n"
    "        \"user_alice\",\n"
    "        \"user_bob\",\n"
    "        \"user_charlie\"\n"
    "      ]\n"
    "    }\n"
    "  }\n"
    "}\n";

const std::string kFlagsAfter =
    "{\n"
    "  \"flags\": {\n"
    "    \"phase4_online_learning\": {\n"
    "      \"description\": \"Enable Phase 4 online learning router\",\n"
    "      \"default_enabled\": false,\n"
    "      \"rollout_percentage\": 0,\n"
    "      \"whitelist\": [\n"
    "        \"user_alice\",\n"
    "        \"user_bob\",\n"
    "        \"user_charlie\"\n"
    "      ]\n"
    "    }\n"
    "  }\n"
    "}\n";

// Stage 1's documented baseline: "P99: ~1000ms" measured, written here as 0.8 s so that
// 2x (1.6 s) is above the absolute 1 s rule and the test knows which rule acts.
const std::string kBaseline = "{\"latency\": {\"p50\": 0.2, \"p90\": 0.5, \"p99\": 0.8}}\n";

std::string stats(int queue_size) {
    return "{\"feedback_count\": 412, \"queue_size\": " + std::to_string(queue_size) +
           ", \"avg_reward\": 0.61, \"learning_rate\": 0.01}";
}

/// The router's log: about 80 queries a second, latency `base_ms` + 0..99 ms, and now and
/// then a line that is not a query (the rules must not count it).
class Workload {
public:
    explicit Workload(std::filesystem::path log) : log_(std::move(log)) {
        ticker_.emplace(50ms, [this] { step(); });
    }
    void setBaseMs(int ms) { base_ms_ = ms; }

private:
    void step() {
        std::string batch;
        for (int k = 0; k < 4; ++k, ++i_) {
            batch += "{\"timestamp\":\"2026-12-01T10:00:00.000Z\",\"level\":\"info\",\"event\":\"query\",\"query_id\":\"q" +
                     std::to_string(i_) + "\",\"intent\":\"graph\",\"latency_ms\":" +
                     std::to_string(base_ms_.load() + (i_ * 37) % 100) + "}\n";
            if (i_ % 20 == 19) {
                // Not a query: a slow background job, whose duration is no query latency.
                batch += "{\"timestamp\":\"2026-12-01T10:00:00.000Z\",\"level\":\"info\",\"event\":\"weights_updated\","
                         "\"latency_ms\":4500}\n";
            }
        }
        appendFile(log_, batch);
    }

    std::filesystem::path log_;
    std::atomic<int> base_ms_{150};
    int i_ = 0;  // lines written; the ticker's alone
    std::optional<Ticker> ticker_;  // last: stopped first
};


/// The router's surroundings: its log, its stats endpoint, the baseline and flag files,
/// the alert receiver, and the environment that points the shipped config at them.
struct Router {
    TempDir dir;
    HttpReceiver learning;
    HttpReceiver alerts;
    ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    std::uint16_t port = reserved.port();
    std::filesystem::path log = dir / "logs" / "apex-memory.log";

    explicit Router(const std::string& baseline) {
        learning.setBody(stats(37), {{"Content-Type", "application/json"}});
        std::filesystem::create_directories(dir / "logs");
        writeFile(log, "");
        writeFile(dir / "feature_flags.json", kFlagsBefore);
        writeFile(dir / "baseline.json", baseline);
    }

    std::vector<std::pair<std::string, std::string>> env() const {
        return {{"ROLLGUARD_STATE_DIR", (dir / "state").string()},
                {"ROLLGUARD_LISTEN", "127.0.0.1:" + std::to_string(port)},
                {"APEX_LOG_FILE", log.string()},
                {"APEX_STATS_URL", learning.url("/api/router/online-learning/stats")},
                {"APEX_BASELINE_FILE", (dir / "baseline.json").string()},
                {"APEX_FEATURE_FLAGS_FILE", (dir / "feature_flags.json").string()},
                {"APEX_ALERT_WEBHOOK_URL", alerts.url("/rollguard")}};
    }
    std::string flags() const { return readFile(dir / "feature_flags.json"); }
};

}  // namespace

TEST_CASE("Query router guide: p99 over 1 s sets rollout_percentage to 0, a queue over 500 only warns", "[guide][integration]") {
    Router router(kBaseline);
    const TempDir& dir = router.dir;
    HttpReceiver& learning = router.learning;
    const HttpReceiver& alerts = router.alerts;
    const std::uint16_t port = router.port;
    const std::filesystem::path& log = router.log;
    const auto flags = [&] { return router.flags(); };
    Workload workload(log);
    RunningAgent agent(kConfig, {"--time-scale", "60"}, router.env(), dir.path());
    REQUIRE(agent.waitHealthy(port, 30s));

    // Healthy: queries at 150-249 ms, queue 37, reward 0.61; the rules see it, nothing acts.
    const std::string p99 = "router-p99-critical";
    REQUIRE(eventually([&] {
        const auto r = agentStatus(port, p99).rule;
        return r && r->value && *r->value < 0.3;
    }, 30s));
    REQUIRE(eventually([&] {
        const auto r = agentStatus(port, "router-queue-size").rule;
        return r && r->value == 37.0;
    }, 30s));
    REQUIRE(evaluationsPass(port, 3));
    CHECK(flags() == kFlagsBefore);
    CHECK(alerts.requests().empty());

    // Near-miss: queries at 900-999 ms, p99 just under 1 s, for several times `for` (1 s).
    workload.setBaseMs(900);
    REQUIRE(eventually([&] {
        const auto r = agentStatus(port, p99).rule;
        return r && r->value && *r->value >= 0.9;
    }, 30s));
    REQUIRE(evaluationsPass(port, 5));
    const auto near_miss = agentStatus(port, p99).rule;
    REQUIRE(near_miss);
    CHECK(near_miss->state == "inactive");
    CHECK(*near_miss->value < 1.0);
    CHECK(flags() == kFlagsBefore);
    CHECK(alerts.requests().empty());
    workload.setBaseMs(150);

    // The feedback queue at 800 (> 500) for the (scaled) 5 minutes: a warning, the flag stays.
    learning.setBody(stats(800), {{"Content-Type", "application/json"}});
    REQUIRE(alerts.waitForRequests(1, 30s));
    {
        const auto requests = alerts.requests();
        REQUIRE(requests.size() == 1);
        CHECK(requests[0].target == "/rollguard");
        simdjson::dom::parser parser;
        simdjson::dom::element body;
        REQUIRE(parser.parse(requests[0].body).get(body) == simdjson::SUCCESS);
        CHECK(std::string_view(body["rule"]) == "router-queue-size");
        CHECK(std::string_view(body["severity"]) == "warning");
        CHECK(std::string_view(body["state"]) == "firing");
        CHECK(std::string_view(body["source"]) == "learning.queue_size");
        CHECK(double(body["value"]) == 800.0);
        CHECK(double(body["threshold"]) == 500.0);
    }
    CHECK(flags() == kFlagsBefore);

    // Queries at 1.3-1.4 s: p99 above 1 s (and under 2x the baseline): instant disable.
    workload.setBaseMs(1300);
    REQUIRE(eventually([&] { return flags() != kFlagsBefore; }, 30s));
    CHECK(flags() == kFlagsAfter);
    REQUIRE(alerts.waitForRequests(2, 30s));
    const auto requests = alerts.requests();
    REQUIRE(requests.size() == 2);
    simdjson::dom::parser parser;
    simdjson::dom::element body;
    REQUIRE(parser.parse(requests[1].body).get(body) == simdjson::SUCCESS);
    CHECK(std::string_view(body["rule"]) == p99);
    CHECK(std::string_view(body["severity"]) == "critical");
    CHECK(std::string_view(body["state"]) == "firing");
    CHECK(std::string_view(body["metric"]) == "p99");
    CHECK(double(body["value"]) > 1.0);
    CHECK(double(body["value"]) < 1.6);
    CHECK(double(body["threshold"]) == 1.0);
    // The 2x-baseline rule saw the same p99 under its 1.6 s: it did not fire.
    const auto vs_baseline = agentStatus(port, "router-p99-vs-baseline").rule;
    REQUIRE(vs_baseline);
    CHECK(vs_baseline->state == "inactive");

    agent.process().signal(SIGTERM);
    CHECK(agent.process().wait(15s) == 0);
}

TEST_CASE("Query router guide: p99 over twice the Stage 1 baseline rolls back even under 1 s", "[guide][integration]") {
    // A fast router: baseline p99 0.3 s, so 2x is 0.6 s, under the absolute 1 s.
    Router r("{\"latency\": {\"p50\": 0.1, \"p90\": 0.2, \"p99\": 0.3}}\n");
    Workload workload(r.log);
    RunningAgent agent(kConfig, {"--time-scale", "60"}, r.env(), r.dir.path());
    REQUIRE(agent.waitHealthy(r.port, 30s));

    const std::string rule = "router-p99-vs-baseline";
    REQUIRE(eventually([&] {
        const auto v = agentStatus(r.port, rule).rule;
        return v && v->value && *v->value < 0.3;
    }, 30s));
    REQUIRE(evaluationsPass(r.port, 2));
    CHECK(r.flags() == kFlagsBefore);
    CHECK(r.alerts.requests().empty());

    // Queries at 0.7-0.8 s: p99 above 0.6 s, under 1 s.
    workload.setBaseMs(700);
    REQUIRE(eventually([&] { return r.flags() != kFlagsBefore; }, 30s));
    CHECK(r.flags() == kFlagsAfter);
    REQUIRE(r.alerts.waitForRequests(1, 30s));
    const auto requests = r.alerts.requests();
    REQUIRE(requests.size() == 1);
    simdjson::dom::parser parser;
    simdjson::dom::element body;
    REQUIRE(parser.parse(requests[0].body).get(body) == simdjson::SUCCESS);
    CHECK(std::string_view(body["rule"]) == rule);
    CHECK(std::string_view(body["severity"]) == "critical");
    CHECK(double(body["threshold"]) == Approx(0.6));  // the effective threshold: 2 x 0.3 s
    CHECK(double(body["value"]) > 0.6);
    CHECK(double(body["value"]) < 1.0);
    const auto absolute = agentStatus(r.port, "router-p99-critical").rule;
    REQUIRE(absolute);
    CHECK(absolute->state == "inactive");

    agent.process().signal(SIGTERM);
    CHECK(agent.process().wait(15s) == 0);
}
