// Rollout guide 1, the reactive message router (Synapse): the real binary runs the
// SHIPPED config/examples/synapse-router.toml, unchanged, at --time-scale 60 (its
// 5-minute windows play in 5 s), against a message log this test writes, a Prometheus
// endpoint serving the message-loss counter and a JSON endpoint serving the emergence
// score. Healthy traffic and near misses (0.5 % errors, 60 messages lost, an emergence
// score of 0.55) do nothing; 5 % errors set SYNAPSE_FORCE_PYTHON=1 in the env file
// (every other line kept) and post the alert; then 150 more lost messages and an
// emergence score of 0.3 each alert as their own incident.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
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

constexpr const char* kEnvBefore =
    "# synapse service environment (EnvironmentFile= of synapse.service)\n"
    "SYNAPSE_HOME=/srv/synapse\n"
    "SYNAPSE_FORCE_PYTHON=0\n"
    "\n"
    "SYNAPSE_REDIS_URL=redis://127.0.0.1:6379\n";
constexpr const char* kEnvAfter =
    "# synapse service environment (EnvironmentFile= of synapse.service)\n"
    "SYNAPSE_HOME=/srv/synapse\n"
    "SYNAPSE_FORCE_PYTHON=1\n"
    "\n"
    "SYNAPSE_REDIS_URL=redis://127.0.0.1:6379\n";

/// The router's message log: a thread appends 20 lines every 50 ms (400 messages/s)
/// with the current error share (per thousand, spread evenly) and latency.
class MessageLog {
public:
    explicit MessageLog(std::filesystem::path path) : path_(std::move(path)) {
        writeFile(path_, "");
        ticker_.emplace(50ms, [this] { step(); });
    }
    MessageLog(const MessageLog&) = delete;
    MessageLog& operator=(const MessageLog&) = delete;

    void setErrorsPerThousand(int n) { errors_per_thousand_ = n; }

private:
    void step() {
        std::string batch;
        for (int i = 0; i < 20; ++i) {
            carry_ += errors_per_thousand_.load();
            const bool failed = carry_ >= 1000;
            if (failed) {
                carry_ -= 1000;
            }
            batch += R"({"ts":"2026-12-01T10:00:00.000Z","event":"message_routed","tract":"internal",)";
            batch += R"("latency_ms":0.8,"status":")";
            batch += failed ? "failed" : "delivered";
            batch += "\"}\n";
        }
        appendFile(path_, batch);
    }

    std::filesystem::path path_;
    std::atomic<int> errors_per_thousand_{0};
    int carry_ = 0;  // the ticker's alone
    std::optional<Ticker> ticker_;  // last: stopped first
};

std::string lostCounter(int n) {
    return "# HELP synapse_messages_lost_total Messages lost by the router.\n"
           "# TYPE synapse_messages_lost_total counter\n"
           "synapse_messages_lost_total " + std::to_string(n) + "\n";
}

std::string consciousness(const std::string& emergence) {
    return R"({"emergence_score": )" + emergence + R"(, "dialogue_balance": 0.81, "balanced_events": 42})";
}


/// True once the rule's last evaluation saw `predicate(value)` with data.
template <typename Predicate>
bool ruleSees(std::uint16_t port, const std::string& name, Predicate predicate) {
    const auto view = ruleStatus(port, name);
    return view && view->value && predicate(*view->value);
}

/// The alert bodies the receiver got for one rule.
std::vector<std::string> alertsFor(const HttpReceiver& receiver, const std::string& rule) {
    std::vector<std::string> out;
    for (const auto& r : receiver.requests()) {
        if (r.body.find("\"rule\":\"" + rule + "\"") != std::string::npos) {
            out.push_back(r.body);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("guide synapse router - error ratio rolls back to Python, loss and emergence alert, near misses do not", "[guide][integration]") {
    TempDir dir;
    std::filesystem::create_directories(dir / "logs");
    writeFile(dir / "synapse.env", kEnvBefore);
    HttpReceiver metrics, scores, alerts;
    metrics.setBody(lostCounter(3), {{"Content-Type", "text/plain; version=0.0.4"}});
    scores.setBody(consciousness("0.92"), {{"Content-Type", "application/json"}});
    MessageLog log(dir / "logs" / "orchestration.jsonl");

    // The shipped file, unchanged, through a link in the temp dir (the agent's stdout and
    // stderr go next to the config path it is given, not into the source tree).
    std::filesystem::create_symlink(ROLLGUARD_SOURCE_DIR "/config/examples/synapse-router.toml",
                                    dir / "synapse-router.toml");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    RunningAgent agent(dir / "synapse-router.toml", {"--time-scale", "60"},
                       {{"ROLLGUARD_STATE_DIR", (dir / "state").string()},
                        {"ROLLGUARD_LISTEN", "127.0.0.1:" + std::to_string(port)},
                        {"SYNAPSE_LOG_DIR", (dir / "logs").string()},
                        {"SYNAPSE_METRICS_URL", metrics.url("/metrics")},
                        {"SYNAPSE_CONSCIOUSNESS_URL", scores.url("/consciousness")},
                        {"SYNAPSE_ENV_FILE", (dir / "synapse.env").string()},
                        {"SYNAPSE_ALERT_URL", alerts.url("/rollguard")}});
    // The agent's log, shown with a failed check.
    const auto logged = [&](bool ok) {
        INFO(agent.stderrText());
        CHECK(ok);
        return ok;
    };
    REQUIRE(logged(agent.waitHealthy(port, 15s)));

    // Healthy: every rule evaluates with data (400 messages/s of which none failed, the
    // counter read, the score read) and nothing happens.
    REQUIRE(logged(eventually(
        [&] {
            const auto errors = ruleStatus(port, "synapse-error-ratio");
            return errors && errors->value && errors->samples >= 100 &&
                   ruleSees(port, "synapse-emergence-score", [](double v) { return v > 0.9; }) &&
                   ruleStatus(port, "synapse-message-loss").has_value() && metrics.requests().size() >= 3;
        },
        15s)));
    // Healthy, so nothing may happen: the pause only gives a wrong action the chance to
    // show, it cannot fail a correct agent.
    std::this_thread::sleep_for(2s);
    CHECK(readFile(dir / "synapse.env") == kEnvBefore);
    CHECK(alerts.requests().empty());

    // Near misses: 0.5 % errors (under 1 %), 60 messages lost (under 100), an emergence
    // score of 0.55 (under the 0.7 target, above the 0.5 trigger). The agent sees each
    // of them and does nothing.
    log.setErrorsPerThousand(5);
    metrics.setBody(lostCounter(63), {{"Content-Type", "text/plain; version=0.0.4"}});
    scores.setBody(consciousness("0.55"), {{"Content-Type", "application/json"}});
    REQUIRE(logged(eventually(
        [&] {
            return ruleSees(port, "synapse-error-ratio", [](double v) { return v > 0.003 && v < 0.008; }) &&
                   ruleSees(port, "synapse-message-loss", [](double v) { return v == 60.0; }) &&
                   ruleSees(port, "synapse-emergence-score", [](double v) { return v == 0.55; });
        },
        15s)));
    // The agent sees each near miss (above); nothing may fire. The pause only gives a
    // wrong action the chance to show, it cannot fail a correct agent.
    std::this_thread::sleep_for(3s);
    REQUIRE(agent.running());
    CHECK(readFile(dir / "synapse.env") == kEnvBefore);
    CHECK(alerts.requests().empty());

    // The breach: 5 % of messages fail. SYNAPSE_FORCE_PYTHON=1 in the env file, every
    // other line, comment and blank line kept, the old file as the backup; then the alert.
    log.setErrorsPerThousand(50);
    REQUIRE(logged(eventually([&] { return !alertsFor(alerts, "synapse-error-ratio").empty(); }, 15s)));
    CHECK(readFile(dir / "synapse.env") == kEnvAfter);
    CHECK(readFile(dir / "synapse.env.rollguard.bak") == kEnvBefore);
    {
        const auto requests = alerts.requests();
        REQUIRE(requests.size() == 1);
        CHECK(requests[0].method == "POST");
        CHECK(requests[0].target == "/rollguard");
        CHECK(requests[0].header("content-type").find("application/json") != std::string::npos);
        simdjson::dom::parser parser;
        simdjson::dom::element body;
        REQUIRE(parser.parse(requests[0].body).get(body) == simdjson::SUCCESS);
        CHECK(std::string_view(body["rule"]) == "synapse-error-ratio");
        CHECK(std::string_view(body["severity"]) == "critical");
        CHECK(std::string_view(body["state"]) == "firing");
        CHECK(std::string_view(body["source"]) == "router");
        CHECK(std::string_view(body["metric"]) == "error_ratio");
        CHECK(std::string_view(body["comparison"]) == "above");
        CHECK(double(body["threshold"]) == Approx(0.01));
        CHECK(double(body["value"]) > 0.01);
        CHECK(int64_t(body["samples"]) >= 100);
        CHECK(std::string_view(body["description"]) == "guide: Error rate >1.0% (rollback trigger)");
    }
    log.setErrorsPerThousand(0);

    // 150 more messages lost (210 in the window, over 100): its own incident, its own
    // alert; the env file already says SYNAPSE_FORCE_PYTHON=1 and stays as it is.
    metrics.setBody(lostCounter(213), {{"Content-Type", "text/plain; version=0.0.4"}});
    REQUIRE(logged(eventually([&] { return !alertsFor(alerts, "synapse-message-loss").empty(); }, 15s)));
    {
        simdjson::dom::parser parser;
        simdjson::dom::element body;
        REQUIRE(parser.parse(alertsFor(alerts, "synapse-message-loss").front()).get(body) == simdjson::SUCCESS);
        CHECK(std::string_view(body["severity"]) == "critical");
        CHECK(std::string_view(body["source"]) == "synapse.lost");
        CHECK(std::string_view(body["metric"]) == "increase");
        CHECK(double(body["threshold"]) == Approx(100.0));
        CHECK(double(body["value"]) == Approx(210.0));
    }

    // The emergence score drops to 0.3: under 0.5, the last trigger of the guide.
    scores.setBody(consciousness("0.3"), {{"Content-Type", "application/json"}});
    REQUIRE(logged(eventually([&] { return !alertsFor(alerts, "synapse-emergence-score").empty(); }, 15s)));
    {
        simdjson::dom::parser parser;
        simdjson::dom::element body;
        REQUIRE(parser.parse(alertsFor(alerts, "synapse-emergence-score").front()).get(body) == simdjson::SUCCESS);
        CHECK(std::string_view(body["severity"]) == "critical");
        CHECK(std::string_view(body["metric"]) == "value");
        CHECK(std::string_view(body["comparison"]) == "below");
        CHECK(double(body["threshold"]) == Approx(0.5));
        CHECK(double(body["value"]) == Approx(0.3));
    }
    CHECK(readFile(dir / "synapse.env") == kEnvAfter);

    // Each incident acted once (the rollback latch), and no latency rule fired.
    CHECK(alertsFor(alerts, "synapse-error-ratio").size() == 1);
    CHECK(alertsFor(alerts, "synapse-mean-latency").empty());
    CHECK(alertsFor(alerts, "synapse-p95-latency").empty());

    agent.process().signal(SIGTERM);
    CHECK(agent.process().wait(10s) == 0);
}
