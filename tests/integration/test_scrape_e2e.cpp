// End to end with scrape sources: the real rollguard binary scrapes a health endpoint and
// a /metrics endpoint of ours on loopback, rolls back on a counter jump and on a sustained
// outage, ignores a short blip, and shows its targets in /metrics and /api/v1/status.

#include <signal.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "agent_status.h"
#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

std::string configText(const TempDir& dir, const HttpReceiver& health, const HttpReceiver& app, std::uint16_t listen) {
    const auto d = dir.path().string();
    return "[agent]\n"
           "tick = \"100ms\"\n"
           "listen = \"127.0.0.1:" + std::to_string(listen) + "\"\n"
           "\n"
           "[[source]]\n"
           "name = \"api\"\n"
           "type = \"health\"\n"
           "url = \"" + health.url("/healthz") + "\"\n"
           "interval = \"200ms\"\n"
           "body_contains = \"ok\"\n"
           "\n"
           "[[source]]\n"
           "name = \"app\"\n"
           "type = \"prometheus\"\n"
           "url = \"" + app.url("/metrics") + "\"\n"
           "interval = \"200ms\"\n"
           "series.lost = { counter = 'messages_lost_total' }\n"
           "\n"
           "[[rule]]\n"
           "name = \"api-down\"\n"
           "source = \"api.up\"\n"
           "metric = \"value\"\n"
           "below = 1\n"
           "window = \"1s\"\n"
           "for = \"2s\"\n"
           "hooks = [\"mark-down\"]\n"
           "\n"
           "[[rule]]\n"
           "name = \"message-loss\"\n"
           "source = \"app.lost\"\n"
           "metric = \"increase\"\n"
           "above = 100\n"
           "window = \"2s\"\n"
           "hooks = [\"mark-loss\"]\n"
           "\n"
           "[[hook]]\n"
           "name = \"mark-down\"\n"
           "type = \"env_file\"\n"
           "path = \"" + d + "/app.env\"\n"
           "set = { API_DOWN_ROLLBACK = \"1\" }\n"
           "\n"
           "[[hook]]\n"
           "name = \"mark-loss\"\n"
           "type = \"env_file\"\n"
           "path = \"" + d + "/app.env\"\n"
           "set = { LOSS_ROLLBACK = \"1\" }\n";
}

std::string lost(int n) {
    return "# TYPE messages_lost_total counter\nmessages_lost_total " + std::to_string(n) + "\n";
}

}  // namespace

TEST_CASE("the binary rolls back on a scraped counter jump and a sustained outage, not on a blip", "[e2e][integration][scrape]") {
    TempDir dir;
    HttpReceiver health, app;
    health.setBody("status: ok\n");
    app.setBody(lost(10));
    writeFile(dir / "app.env", "API_DOWN_ROLLBACK=0\nLOSS_ROLLBACK=0\n");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    writeFile(dir / "rollguard.toml", configText(dir, health, app, port));
    RunningAgent agent(dir / "rollguard.toml");
    const auto err = agent.stderrPath();
    INFO(readFile(err));

    // Healthy, with a counter that grows slowly, and one short outage: nothing fires.
    REQUIRE(health.waitForRequests(3, 30s));
    for (int i = 1; i <= 5; ++i) {
        app.setBody(lost(10 + i));
        std::this_thread::sleep_for(100ms);  // paces the counter's growth; nothing is checked here
    }
    // The outage is two failed health checks (the next two scrapes, 200 ms apart), well
    // under `for = 2s`: its length is counted in the agent's scrapes, so a slow test
    // thread cannot stretch it.
    health.queueStatuses({503, 503});
    const std::string api_errors = R"(rollguard_scrape_errors_total{kind="http_status",series="",source="api",)";
    REQUIRE(eventually([&] { return agentMetric(port, api_errors) == 2.0; }, 30s));
    // Over: ten more good checks (two seconds of them, longer than `for`) give the blip
    // every chance to fire; it must not.
    const std::size_t after_blip = health.requests().size();
    REQUIRE(health.waitForRequests(after_blip + 10, 30s));
    REQUIRE(agent.running());
    CHECK(agentMetric(port, api_errors) == 2.0);
    CHECK(readFile(dir / "app.env") == "API_DOWN_ROLLBACK=0\nLOSS_ROLLBACK=0\n");

    // 500 messages lost at once: the increase rule fires on the next scrape.
    app.setBody(lost(515));
    CHECK(eventually([&] { return readFile(dir / "app.env").find("LOSS_ROLLBACK=1") != std::string::npos; }, 30s));
    CHECK(readFile(dir / "app.env").find("API_DOWN_ROLLBACK=0") != std::string::npos);

    // The endpoint stays down: after `for` the outage rule rolls back too.
    health.setStatus(503);
    CHECK(eventually([&] { return readFile(dir / "app.env").find("API_DOWN_ROLLBACK=1") != std::string::npos; }, 30s));

    // The targets as a Prometheus server and a person see them.
    const auto metrics = httpRequest(port, "GET", "/metrics", {}, "");
    CHECK(metrics.body.find("rollguard_scrape_up{series=\"\",source=\"api\"") != std::string::npos);
    CHECK(metrics.body.find("rollguard_scrape_errors_total{kind=\"http_status\",series=\"\",source=\"api\"") !=
          std::string::npos);
    const auto status = httpRequest(port, "GET", "/api/v1/status", {}, "");
    CHECK(status.body.find("\"scrapes\":[") != std::string::npos);
    CHECK(status.body.find("\"type\":\"health\"") != std::string::npos);

    agent.signal(SIGTERM);
    CHECK(agent.wait(10s) == 0);
}
