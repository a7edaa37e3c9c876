// The alertmanager hook against a real prometheus-alertmanager (Debian package) on
// loopback, routing to a webhook receiver of the test: the alert arrives through
// Alertmanager's routing, then resolves.
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "http_receiver.h"
#include "process.h"
#include "rollguard/agent/hooks.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

const char* const kAlertmanagerCandidates[] = {"/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"};

std::string findAlertmanager() {
    for (const char* path : kAlertmanagerCandidates) {
        if (::access(path, X_OK) == 0) {
            return path;
        }
    }
    return {};
}

/// Notifications Alertmanager delivered with `status`, as (alertname, status) checks.
bool hasNotification(const HttpReceiver& receiver, const std::string& status) {
    for (const auto& req : receiver.requests()) {
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        if (parser.parse(req.body).get(doc) != simdjson::SUCCESS) {
            continue;
        }
        std::string_view s;
        if (doc["status"].get(s) == simdjson::SUCCESS && s == status) {
            return true;
        }
    }
    return false;
}

}  // namespace

TEST_CASE("alertmanager hook: the alert fires and resolves through a real Alertmanager", "[integration][alertmanager]") {
    const std::string binary = findAlertmanager();
    INFO("prometheus-alertmanager is not installed: run scripts/install-deps.sh (apt-get install "
         "prometheus-alertmanager)");
    REQUIRE_FALSE(binary.empty());

    TempDir dir;
    HttpReceiver receiver;
    // Alertmanager's port, nobody else's while it lives: until it listens, the hook's
    // connections are refused (and retried), never answered by another test's server.
    const ReservedPort am_reserved;
    const std::uint16_t am_port = am_reserved.port();
    writeFile(dir / "alertmanager.yml",
              "route:\n"
              "  receiver: test\n"
              "  group_by: ['alertname']\n"
              "  group_wait: 0s\n"
              "  group_interval: 1s\n"
              "  repeat_interval: 1h\n"
              "receivers:\n"
              "  - name: test\n"
              "    webhook_configs:\n"
              "      - url: " + receiver.url("/am") + "\n"
              "        send_resolved: true\n");
    Process am({binary, "--config.file=" + (dir / "alertmanager.yml").string(),
                "--storage.path=" + (dir / "data").string(),
                "--web.listen-address=127.0.0.1:" + std::to_string(am_port), "--cluster.listen-address=",
                "--log.level=warn"},
               (dir / "am.out").string(), (dir / "am.err").string());

    rollguard::agent::HookConfig c;
    c.name = "am";
    c.type = rollguard::agent::HookType::Alertmanager;
    c.url = "http://127.0.0.1:" + std::to_string(am_port);
    c.timeout = 2s;
    c.retries = 20;  // connection refused until Alertmanager listens: retried
    c.retry_backoff = 100ms;
    c.resend_interval = 1s;
    c.external_url = "http://agent-1:9464";
    auto hook = rollguard::agent::makeHook(c);

    rollguard::agent::BreachEvent e;
    e.rule = "checkout-p99";
    e.severity = "critical";
    e.state = "firing";
    e.source = "api";
    e.metric = "p99";
    e.host = "web-1";
    e.summary = "p99 412ms > 200ms over 30s";
    e.since = std::chrono::system_clock::now() - 10s;
    e.fired_at = std::chrono::system_clock::now();
    const auto fired = hook->run(e);
    INFO("alertmanager stderr: " << readFile(dir / "am.err"));
    REQUIRE(fired.ok);

    REQUIRE(eventually([&] { return hasNotification(receiver, "firing"); }, 30s));
    const auto reqs = receiver.requests();
    simdjson::dom::parser parser;
    const simdjson::dom::element doc = parser.parse(reqs.front().body);
    CHECK(std::string_view(doc["version"]) == "4");
    CHECK(std::string_view(doc["receiver"]) == "test");
    const simdjson::dom::element alert = doc["alerts"].at(0);
    CHECK(std::string_view(alert["labels"]["alertname"]) == "checkout-p99");
    CHECK(std::string_view(alert["labels"]["severity"]) == "critical");
    CHECK(std::string_view(alert["labels"]["instance"]) == "web-1");
    CHECK(std::string_view(alert["annotations"]["summary"]) == "p99 412ms > 200ms over 30s");
    CHECK(std::string_view(alert["generatorURL"]) == "http://agent-1:9464/api/v1/status");

    e.state = "resolved";
    e.resolved_at = std::chrono::system_clock::now();
    REQUIRE(hook->run(e).ok);
    REQUIRE(eventually([&] { return hasNotification(receiver, "resolved"); }, 30s));
}
