// Rollout guide 4, the messaging system: the real binary runs the SHIPPED
// config/examples/messaging.toml, unchanged, at --time-scale 30 (the guide's `for: 1m`
// plays in 2 s, `for: 3m` in 6 s), scraping a /metrics endpoint this test serves and
// updates like the service would. A short outage (shorter than `for`) does nothing; the
// p95 latency warning notifies without touching the env file or the disable-all
// endpoint; an outage longer than `for` (up == 0 for 1m) is critical: the MESSAGING_*
// feature flags go false in the env file, the disable-all endpoint gets its request and
// the alert receiver the critical alert.

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

// The service's env file with the guide's Phase 1 and Phase 2 features on.
constexpr const char* kEnvBefore =
    "# messaging-core: Phase 1 + Phase 2 features enabled\n"
    "MESSAGING_ADAPTIVE_TIMING=true\n"
    "MESSAGING_TIMING_CALIBRATION=true\n"
    "MESSAGING_RETRY_LOGIC=true\n"
    "MESSAGING_FLAG_VALIDATION=true\n"
    "MESSAGING_METRICS_COLLECTION=true\n"
    "MESSAGING_LOGGING_ENHANCED=true\n"
    "\n"
    "# Phase 2\n"
    "MESSAGING_INTELLIGENT_ORDERING=true\n"
    "MESSAGING_URGENT_FIRST=true\n"
    "MESSAGING_DASHBOARD=true\n"
    "MESSAGING_ALERTING=true\n"
    "MESSAGING_CIRCUIT_BREAKER=true\n";
// Every new feature false, in place; the ones the file did not have appended in the
// hook's order; safety and observability flags untouched.
constexpr const char* kEnvAfter =
    "# messaging-core: Phase 1 + Phase 2 features enabled\n"
    "MESSAGING_ADAPTIVE_TIMING=false\n"
    "MESSAGING_TIMING_CALIBRATION=false\n"
    "MESSAGING_RETRY_LOGIC=false\n"
    "MESSAGING_FLAG_VALIDATION=false\n"
    "MESSAGING_METRICS_COLLECTION=true\n"
    "MESSAGING_LOGGING_ENHANCED=true\n"
    "\n"
    "# Phase 2\n"
    "MESSAGING_INTELLIGENT_ORDERING=false\n"
    "MESSAGING_URGENT_FIRST=false\n"
    "MESSAGING_DASHBOARD=true\n"
    "MESSAGING_ALERTING=true\n"
    "MESSAGING_CIRCUIT_BREAKER=true\n"
    "MESSAGING_EXPONENTIAL_BACKOFF=false\n"
    "MESSAGING_ERROR_CLASSIFICATION=false\n"
    "MESSAGING_PRIORITY_OVERRIDE=false\n"
    "MESSAGING_MUTEX_VALIDATION=false\n"
    "MESSAGING_CUSTOM_ORDERING=false\n"
    "MESSAGING_PARALLEL_DELIVERY=false\n"
    "MESSAGING_RESOURCE_POOLING=false\n";

/// The messaging service's /metrics: a thread delivers 20 messages every 50 ms and
/// serves the counters and the delivery-duration histogram (seconds) on `receiver`.
/// Fast deliveries take under 100 ms, slow ones between 5 s and 10 s.
class MessagingService {
public:
    explicit MessagingService(HttpReceiver& receiver) : receiver_(receiver) {
        publish();
        ticker_.emplace(50ms, [this] { step(); });
    }
    MessagingService(const MessagingService&) = delete;
    MessagingService& operator=(const MessagingService&) = delete;

    void setSlow(bool slow) { slow_ = slow; }

private:
    void step() {
        deliveries_ += 20;
        (slow_ ? slow_count_ : fast_count_) += 20;
        publish();
    }

    void publish() {
        const auto n = [](std::uint64_t v) { return std::to_string(v); };
        const std::uint64_t fast = fast_count_;
        const std::uint64_t all = fast + slow_count_;
        std::string body;
        body += "# TYPE messaging_deliveries_total counter\n";
        body += "messaging_deliveries_total " + n(deliveries_) + "\n";
        body += "# TYPE messaging_errors_total counter\n";
        body += "messaging_errors_total 0\n";
        body += "# TYPE messaging_delivery_duration histogram\n";
        for (const char* le : {"0.1", "0.5", "1", "2.5", "5"}) {
            body += std::string("messaging_delivery_duration_bucket{le=\"") + le + "\"} " + n(fast) + "\n";
        }
        body += "messaging_delivery_duration_bucket{le=\"10\"} " + n(all) + "\n";
        body += "messaging_delivery_duration_bucket{le=\"+Inf\"} " + n(all) + "\n";
        body += "messaging_delivery_duration_sum " + std::to_string(0.05 * static_cast<double>(fast) +
                                                                     8.0 * static_cast<double>(all - fast)) + "\n";
        body += "messaging_delivery_duration_count " + n(all) + "\n";
        receiver_.setBody(body, {{"Content-Type", "text/plain; version=0.0.4"}});
    }

    HttpReceiver& receiver_;
    std::uint64_t deliveries_ = 0;  // the thread's alone after construction
    std::uint64_t fast_count_ = 0;
    std::uint64_t slow_count_ = 0;
    std::atomic<bool> slow_{false};
    std::optional<Ticker> ticker_;  // last: stopped first
};


template <typename Predicate>
bool ruleSees(std::uint16_t port, const std::string& name, Predicate predicate) {
    const auto view = ruleStatus(port, name);
    return view && view->value && predicate(*view->value);
}

/// The Alertmanager-format alert bodies the receiver got for one alert name and status.
std::vector<std::string> alertsFor(const HttpReceiver& receiver, const std::string& alertname,
                                   const std::string& status = "firing") {
    std::vector<std::string> out;
    for (const auto& r : receiver.requests()) {
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        std::string_view name, st;
        if (parser.parse(r.body).get(doc) == simdjson::SUCCESS &&
            doc["groupLabels"]["alertname"].get(name) == simdjson::SUCCESS && name == alertname &&
            doc["status"].get(st) == simdjson::SUCCESS && st == status) {
            out.push_back(r.body);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("guide messaging - up == 0 for 1m disables the MESSAGING flags, a short outage does not, the p95 warning only notifies", "[guide][integration]") {
    TempDir dir;
    writeFile(dir / "messaging.env", kEnvBefore);
    HttpReceiver metrics, flags, alerts;
    MessagingService service(metrics);

    // The shipped file, unchanged, through a link in the temp dir (the agent's stdout and
    // stderr go next to the config path it is given, not into the source tree).
    std::filesystem::create_symlink(ROLLGUARD_SOURCE_DIR "/config/examples/messaging.toml", dir / "messaging.toml");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    RunningAgent agent(dir / "messaging.toml", {"--time-scale", "30"},
                       {{"ROLLGUARD_STATE_DIR", (dir / "state").string()},
                        {"ROLLGUARD_LISTEN", "127.0.0.1:" + std::to_string(port)},
                        {"MESSAGING_METRICS_URL", metrics.url("/metrics")},
                        {"MESSAGING_ENV_FILE", (dir / "messaging.env").string()},
                        {"MESSAGING_FLAGS_URL", "http://127.0.0.1:" + std::to_string(flags.port())},
                        {"MESSAGING_ALERT_URL", alerts.url("/alerts")}});
    const auto logged = [&](bool ok) {
        INFO(agent.stderrText());
        CHECK(ok);
        return ok;
    };
    REQUIRE(logged(agent.waitHealthy(port, 15s)));

    // Healthy: the service is up, deliveries are fast and none fails; nothing happens.
    REQUIRE(logged(eventually(
        [&] {
            return ruleSees(port, "MessagingSystemDown", [](double v) { return v == 1.0; }) &&
                   ruleSees(port, "MessagingHighLatency", [](double v) { return v < 0.2; }) &&
                   ruleSees(port, "MessagingHighErrorRate", [](double v) { return v == 0.0; });
        },
        15s)));
    // Healthy, so nothing may happen: the pause only gives a wrong action the chance to
    // show, it cannot fail a correct agent.
    std::this_thread::sleep_for(2s);
    CHECK(readFile(dir / "messaging.env") == kEnvBefore);
    CHECK(flags.requests().empty());
    CHECK(alerts.requests().empty());

    // Near miss: the endpoint answers one scrape with 503 (up == 0 until the next scrape,
    // 5 s / 30 = 0.17 s later), far inside `for: 1m` (2 s here). Nothing fires. The
    // outage is one scrape long whatever this thread's speed (it is not ended by the test
    // noticing it), and the agent's scrape error counter shows it was seen.
    const std::string scrape_errors =
        R"(rollguard_scrape_errors_total{kind="http_status",series="",source="messaging",)";
    metrics.queueStatuses({503});
    REQUIRE(logged(eventually([&] { return agentMetric(port, scrape_errors).value_or(0) >= 1.0; }, 30s)));
    REQUIRE(logged(eventually(
        [&] { return ruleSees(port, "MessagingSystemDown", [](double v) { return v == 1.0; }); }, 30s)));
    // Past `for`: had the blip counted, it would fire by now. The pause only gives that
    // (a bug) the chance to show.
    std::this_thread::sleep_for(3s);
    CHECK(ruleStatus(port, "MessagingSystemDown")->state == "inactive");
    CHECK(readFile(dir / "messaging.env") == kEnvBefore);
    CHECK(flags.requests().empty());
    CHECK(alerts.requests().empty());

    // Warning: deliveries take 5-10 s. After `for: 3m` (6 s) the p95 rule notifies the
    // alert receiver, and acts on nothing: the env file and the disable-all endpoint
    // stay untouched.
    service.setSlow(true);
    REQUIRE(logged(eventually([&] { return !alertsFor(alerts, "MessagingHighLatency").empty(); }, 30s)));
    service.setSlow(false);
    {
        simdjson::dom::parser parser;
        simdjson::dom::element body;
        REQUIRE(parser.parse(alertsFor(alerts, "MessagingHighLatency").front()).get(body) == simdjson::SUCCESS);
        CHECK(std::string_view(body["version"]) == "4");
        CHECK(std::string_view(body["receiver"]) == "alert");
        const simdjson::dom::element alert = body["alerts"].at(0);
        CHECK(std::string_view(alert["status"]) == "firing");
        CHECK(std::string_view(alert["labels"]["alertname"]) == "MessagingHighLatency");
        CHECK(std::string_view(alert["labels"]["severity"]) == "warning");
        CHECK(std::string_view(alert["labels"]["source"]) == "messaging.delivery_duration");
        CHECK(std::string_view(alert["labels"]["metric"]) == "p95");
        CHECK(std::string_view(alert["annotations"]["description"]) == "High messaging latency detected");
    }
    CHECK(alerts.requests().size() == 1);
    CHECK(readFile(dir / "messaging.env") == kEnvBefore);
    CHECK(flags.requests().empty());

    // Critical: the endpoint stays down (503) past `for: 1m`. The feature flags go false,
    // disable-all is called with the guide's body, the alert receiver gets the critical.
    metrics.setStatus(503);
    REQUIRE(logged(eventually([&] { return !flags.requests().empty() && !alertsFor(alerts, "MessagingSystemDown").empty(); }, 20s)));
    CHECK(readFile(dir / "messaging.env") == kEnvAfter);
    CHECK(readFile(dir / "messaging.env.rollguard.bak") == kEnvBefore);
    {
        const auto requests = flags.requests();
        REQUIRE(requests.size() == 1);
        CHECK(requests[0].method == "POST");
        CHECK(requests[0].target == "/disable-all");
        CHECK(requests[0].header("content-type").find("application/json") != std::string::npos);
        simdjson::dom::parser parser;
        simdjson::dom::element body;
        REQUIRE(parser.parse(requests[0].body).get(body) == simdjson::SUCCESS);
        CHECK(std::string_view(body["reason"]) == "emergency_rollback");
        CHECK(std::string_view(body["rule"]) == "MessagingSystemDown");
        CHECK(!std::string_view(body["incident_id"]).empty());
    }
    {
        simdjson::dom::parser parser;
        simdjson::dom::element body;
        REQUIRE(parser.parse(alertsFor(alerts, "MessagingSystemDown").front()).get(body) == simdjson::SUCCESS);
        const simdjson::dom::element alert = body["alerts"].at(0);
        CHECK(std::string_view(alert["labels"]["severity"]) == "critical");
        CHECK(std::string_view(alert["labels"]["source"]) == "messaging.up");
        CHECK(std::string_view(alert["annotations"]["description"]) == "Messaging system has been down for 1 minute");
    }

    agent.process().signal(SIGTERM);
    CHECK(agent.process().wait(10s) == 0);
}
