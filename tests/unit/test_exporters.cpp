// /metrics, /healthz and /api/v1/status served by the real listener on 127.0.0.1, and the
// admin API on its Unix socket and over TCP with its token.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "http_client.h"
#include "temp_dir.h"
#include "rollguard/agent/admin.h"
#include "rollguard/exporters/http_server.h"

using namespace rollguard;
using namespace std::chrono_literals;

namespace {

agent::StatusSnapshot sample() {
    agent::StatusSnapshot s;
    s.config_path = "/etc/rollguard/rollguard.toml";
    s.tick = 1s;
    s.started = std::chrono::system_clock::now() - 10s;
    s.last_tick = std::chrono::system_clock::now();
    s.ticks = 10;
    s.incidents = 1;
    agent::StatusSnapshot::Source src;
    src.name = "app";
    src.files = {"/var/log/app.log"};
    src.lines = 1234;
    src.bad_invalid_json = 3;
    src.window_bytes = 524288;
    s.sources.push_back(src);
    agent::StatusSnapshot::Rule r;
    r.name = "errors";
    r.severity = "critical";
    r.metric = "error_ratio";
    r.comparison = "above";
    r.threshold = 0.05;
    r.value = 0.125;
    r.samples = 800;
    r.state = rules::AlertState::Firing;
    r.latched = true;
    s.rules.push_back(r);
    agent::StatusSnapshot::Rule quiet = r;
    quiet.name = "slow";
    quiet.severity = "warning";
    quiet.value.reset();
    quiet.state = rules::AlertState::Inactive;
    quiet.latched = false;
    s.rules.push_back(quiet);
    agent::StatusSnapshot::Hook h;
    h.name = "page";
    h.type = "webhook";
    h.ok = 1;
    h.failed = 2;
    s.hooks.push_back(h);
    return s;
}

}  // namespace

TEST_CASE("metrics text names every series by Prometheus conventions", "[exporters]") {
    const auto text = exporters::renderMetrics(sample());
    CHECK(text.find("# TYPE rollguard_source_lines_total counter\n") != std::string::npos);
    CHECK(text.find("rollguard_source_lines_total{source=\"app\"} 1234\n") != std::string::npos);
    CHECK(text.find("rollguard_source_bad_lines_total{source=\"app\",reason=\"invalid_json\"} 3\n") !=
          std::string::npos);
    CHECK(text.find("rollguard_rule_state{group=\"\",rule=\"errors\",severity=\"critical\"} 2\n") != std::string::npos);
    CHECK(text.find("rollguard_rule_value{group=\"\",rule=\"errors\",severity=\"critical\"} 0.125\n") != std::string::npos);
    CHECK(text.find("rollguard_rule_value{group=\"\",rule=\"slow\",severity=\"warning\"} Nan\n") != std::string::npos);
    CHECK(text.find("rollguard_rule_rollback_latched{group=\"\",rule=\"errors\",severity=\"critical\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("rollguard_hook_runs_total{hook=\"page\",outcome=\"failure\",type=\"webhook\"} 2\n") !=
          std::string::npos);
    CHECK(text.find("rollguard_incidents_total 1\n") != std::string::npos);
    CHECK(text.find("rollguard_source_window_bytes{source=\"app\"} 524288\n") != std::string::npos);
}

TEST_CASE("the listener serves /metrics, /healthz, /api/v1/status on loopback", "[exporters]") {
    auto snapshot = sample();
    exporters::HttpServer server("127.0.0.1:0", [&snapshot] { return snapshot; });
    REQUIRE(server.port() != 0);

    auto r = testing::httpGet(server.port(), "/metrics");
    CHECK(r.status == 200);
    CHECK(r.content_type.find("text/plain; version=0.0.4") == 0);
    CHECK(r.body.find("rollguard_rule_state{group=\"\",rule=\"errors\",severity=\"critical\"} 2") != std::string::npos);

    r = testing::httpGet(server.port(), "/healthz");
    CHECK(r.status == 200);

    r = testing::httpGet(server.port(), "/api/v1/status");
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(r.body.find("\"name\":\"errors\",\"group\":\"\",\"severity\":\"critical\",\"state\":\"firing\"") != std::string::npos);
    CHECK(r.body.find("\"value\":null") != std::string::npos);

    r = testing::httpGet(server.port(), "/nope");
    CHECK(r.status == 404);
}

TEST_CASE("/healthz turns 503 when the evaluation loop stalls", "[exporters]") {
    auto snapshot = sample();
    snapshot.last_tick = std::chrono::system_clock::now() - 60s;
    exporters::HttpServer server("127.0.0.1:0", [&snapshot] { return snapshot; });
    CHECK(testing::httpGet(server.port(), "/healthz").status == 503);
}

TEST_CASE("a listen address already in use is refused with a reason", "[exporters]") {
    auto snapshot = sample();
    exporters::HttpServer first("127.0.0.1:0", [&snapshot] { return snapshot; });
    const std::string taken = "127.0.0.1:" + std::to_string(first.port());
    CHECK_THROWS_WITH(exporters::HttpServer(taken, [&snapshot] { return snapshot; }),
                      Catch::Contains("cannot listen on " + taken));
}

TEST_CASE("a Unix-socket listener: mode 0600, no token for the admin API, a stale socket replaced, removed at the end",
          "[exporters][admin_socket]") {
    testing::TempDir dir;
    const std::string path = (dir / "admin.sock").string();
    auto snapshot = sample();
    exporters::AdminApi admin;
    admin.token = std::make_shared<agent::AdminToken>();  // empty: no TCP admin API at all
    int rearms = 0;
    admin.rearm = [&rearms](const std::string&) {
        ++rearms;
        return exporters::AdminApi::Reply{200, "{\"status\":\"rearmed\"}\n"};
    };
    const agent::AdminEndpoint local{.unix_socket = path, .listen = {}, .token = {}};
    {
        // What a daemon killed with SIGKILL leaves behind: a socket file nobody serves.
        const int stale = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::memcpy(address.sun_path, path.data(), path.size());
        REQUIRE(::bind(stale, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
        ::close(stale);
    }
    {
        exporters::HttpServer server("unix:" + path, [&snapshot] { return snapshot; }, admin);
        CHECK(server.port() == 0);
        struct stat st {};
        REQUIRE(::lstat(path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 0777) == 0600);

        auto r = agent::adminGet(local, "/healthz", 5s);
        CHECK(r.status == 200);
        r = agent::adminPost(local, "/api/v1/rearm", "{}", 5s);
        CHECK(r.status == 200);
        CHECK(rearms == 1);
        // The same API over TCP, with no token configured, is off.
        exporters::HttpServer tcp("127.0.0.1:0", [&snapshot] { return snapshot; }, admin);
        r = agent::adminPost({.unix_socket = {}, .listen = "127.0.0.1:" + std::to_string(tcp.port()), .token = {}},
                             "/api/v1/rearm", "{}", 5s);
        CHECK(r.status == 403);
        CHECK(r.body.find("agent.admin_token_file") != std::string::npos);
        CHECK(rearms == 1);
    }
    CHECK_FALSE(std::filesystem::exists(path));
    CHECK(agent::adminGet(local, "/healthz", 5s).status == 0);
}

TEST_CASE("a Unix-socket listener refuses a path that is not a socket, or too long for one", "[exporters][admin_socket]") {
    testing::TempDir dir;
    auto snapshot = sample();
    testing::writeFile(dir / "admin.sock", "not a socket\n");
    CHECK_THROWS_WITH(exporters::HttpServer("unix:" + (dir / "admin.sock").string(), [&snapshot] { return snapshot; }),
                      Catch::Contains("not a socket"));
    CHECK(testing::readFile(dir / "admin.sock") == "not a socket\n");  // left alone
    const std::string deep = (dir / std::string(120, 'd') / "admin.sock").string();
    CHECK_THROWS_WITH(exporters::HttpServer("unix:" + deep, [&snapshot] { return snapshot; }),
                      Catch::Contains("choose a shorter state_dir"));
}

TEST_CASE("the TCP admin API: 401 without the right bearer token, the token replaced while serving",
          "[exporters][admin_socket]") {
    auto snapshot = sample();
    exporters::AdminApi admin;
    const auto token = std::make_shared<agent::AdminToken>();
    token->set("first-token-first-token-first-token");
    admin.token = token;
    admin.rearm = [](const std::string&) { return exporters::AdminApi::Reply{200, "{}\n"}; };
    exporters::HttpServer server("127.0.0.1:0", [&snapshot] { return snapshot; }, admin);
    agent::AdminEndpoint to{.unix_socket = {}, .listen = "127.0.0.1:" + std::to_string(server.port()), .token = {}};
    CHECK(agent::adminPost(to, "/api/v1/rearm", "{}", 5s).status == 401);
    to.token = "first-token-first-token-first-token";
    CHECK(agent::adminPost(to, "/api/v1/rearm", "{}", 5s).status == 200);
    token->set("second-token-second-token-second-token");
    CHECK(agent::adminPost(to, "/api/v1/rearm", "{}", 5s).status == 401);
    to.token = "second-token-second-token-second-token";
    CHECK(agent::adminPost(to, "/api/v1/rearm", "{}", 5s).status == 200);
}
