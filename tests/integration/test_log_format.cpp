// The agent's own logging, end to end: log_format = "json" makes every stderr line a JSON
// object; a reload re-applies [agent] log_level (unless --log-level was given); the text
// format drops its timestamp when stderr is the journal.

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>

#include "agent_config.h"
#include "http_client.h"
#include "http_receiver.h"
#include "process.h"
#include "running_agent.h"
#include "temp_dir.h"

using namespace rollguard::testing;
using namespace std::chrono_literals;

namespace {

/// A critical rule without hooks: the config loads with a warning, which the agent logs
/// in its log format too.
std::string configText(const TempDir& dir, std::uint16_t port, const std::string& agent_extra) {
    return errorRatioConfig(dir.path(), {.agent = "tick = \"100ms\"\nlisten = \"127.0.0.1:" + std::to_string(port) +
                                                  "\"\nadmin_token_file = \"" + (dir / "admin.token").string() +
                                                  "\"\n" + agent_extra,
                                         .rule = "min_samples = 5\n",
                                         .tail = ""});
}

std::vector<std::string> linesOf(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

struct Record {
    std::string ts;
    std::string level;
    std::string msg;
    std::string logger;
};

/// The record of one stderr line; nullopt when it is not a JSON object with string
/// fields ts, level, msg and logger.
std::optional<Record> parseRecord(const std::string& line) {
    simdjson::dom::parser parser;
    simdjson::dom::object object;
    if (parser.parse(line).get(object) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    Record r;
    for (auto [name, into] : {std::pair{"ts", &r.ts}, std::pair{"level", &r.level}, std::pair{"msg", &r.msg},
                              std::pair{"logger", &r.logger}}) {
        std::string_view value;
        if (object[name].get(value) != simdjson::SUCCESS) {
            return std::nullopt;
        }
        *into = std::string(value);
    }
    return r;
}

/// Every stderr line as a record; a line that is not one fails the test.
std::vector<Record> recordsOf(const std::string& err) {
    std::vector<Record> records;
    for (const auto& line : linesOf(err)) {
        INFO("stderr line: " << line);
        const auto r = parseRecord(line);
        CHECK(r);
        if (r) {
            records.push_back(*r);
        }
    }
    return records;
}

bool hasLevel(const std::string& err, const std::string& level) {
    for (const auto& line : linesOf(err)) {
        const auto r = parseRecord(line);
        if (r && r->level == level) {
            return true;
        }
    }
    return false;
}

}  // namespace

TEST_CASE("log_format json writes every stderr line as a JSON object and a reload to debug logs debug lines",
          "[log_format][integration]") {
    TempDir dir;
    writeAdminToken(dir / "admin.token");
    // A bad line with quotes and a backslash, which the tailer logs as a sample.
    writeFile(dir / "app.log", "{\"status\":200}\nnot \"json\" at C:\\all\n");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    const auto config = dir / "rollguard.toml";
    writeFile(config, configText(dir, port, "log_format = \"json\"\n"));
    RunningAgent agent(config);
    INFO(agent.stderrText());

    REQUIRE(eventually([&] { return agent.stderrText().find("skipped a bad line") != std::string::npos; }, 10s));
    CHECK_FALSE(hasLevel(agent.stderrText(), "debug"));

    // SIGHUP with log_level = "debug": the new daemon's start-up already logs at debug.
    writeFile(config, configText(dir, port, "log_format = \"json\"\nlog_level = \"debug\"\n"));
    agent.signal(SIGHUP);
    REQUIRE(eventually([&] { return hasLevel(agent.stderrText(), "debug"); }, 10s));

    // POST /api/v1/reload back to info.
    writeFile(config, configText(dir, port, "log_format = \"json\"\nlog_level = \"info\"\n"));
    const std::vector<std::string> auth{adminAuthorization()};
    CHECK(httpRequest(port, "POST", "/api/v1/reload", auth, "").status == 200);

    agent.signal(SIGTERM);
    REQUIRE(agent.wait(20s) == 0);

    const auto records = recordsOf(agent.stderrText());
    REQUIRE(records.size() >= 6);
    bool warned = false;
    bool bad_line = false;
    std::size_t to_debug = 0;
    std::size_t to_info = 0;
    std::size_t debug_lines = 0;
    std::size_t debug_lines_after_info = 0;
    for (std::size_t i = 0; i < records.size(); ++i) {
        const auto& r = records[i];
        CHECK(r.logger == "rollguard");
        CHECK(r.ts.size() == std::string("2026-12-01T11:29:45.123+00:00").size());
        CHECK(r.ts[10] == 'T');
        warned = warned || (r.level == "warn" && r.msg.find("errors") != std::string::npos &&
                            r.msg.find(config.string() + ":") == 0);
        bad_line = bad_line || r.msg.find("not \"json\" at C:\\all") != std::string::npos;
        if (r.msg == "reload: log level info -> debug ([agent] log_level)") {
            to_debug = i;
        }
        if (r.msg == "reload: log level debug -> info ([agent] log_level)") {
            to_info = i;
        }
        if (r.level == "debug") {
            ++debug_lines;
            CHECK(to_debug > 0);
            CHECK(i > to_debug);
            if (to_info > 0) {
                ++debug_lines_after_info;
            }
        }
    }
    CHECK(warned);
    CHECK(bad_line);
    CHECK(to_debug > 0);
    CHECK(to_info > to_debug);
    CHECK(debug_lines > 0);
    CHECK(debug_lines_after_info == 0);
    CHECK(agent.stderrText().find("\"msg\":\"stopped\"") != std::string::npos);
}

TEST_CASE("the log-level flag wins over log_level at reload", "[log_format][integration]") {
    TempDir dir;
    writeAdminToken(dir / "admin.token");
    writeFile(dir / "app.log", "{\"status\":200}\n");
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    const std::uint16_t port = reserved.port();
    const auto config = dir / "rollguard.toml";
    writeFile(config, configText(dir, port, "log_format = \"json\"\n"));
    RunningAgent agent(config, {"--log-level", "info"});
    INFO(agent.stderrText());
    REQUIRE(agent.waitHealthy(port));

    writeFile(config, configText(dir, port, "log_format = \"json\"\nlog_level = \"debug\"\n"));
    const std::vector<std::string> auth{adminAuthorization()};
    CHECK(httpRequest(port, "POST", "/api/v1/reload", auth, "").status == 200);
    agent.signal(SIGTERM);
    REQUIRE(agent.wait(20s) == 0);

    const std::string err = agent.stderrText();
    CHECK(err.find("not applied: --log-level info wins") != std::string::npos);
    CHECK_FALSE(hasLevel(err, "debug"));
    CHECK(recordsOf(err).size() == linesOf(err).size());
}

TEST_CASE("text log lines leave the timestamp to the journal when stderr is the journal",
          "[log_format][integration]") {
    TempDir dir;
    writeAdminToken(dir / "admin.token");
    writeFile(dir / "app.log", "{\"status\":200}\n");
    const auto config = dir / "rollguard.toml";
    const ReservedPort reserved;  // the agent's listen port, nobody else's while it lives
    writeFile(config, configText(dir, reserved.port(), ""));
    // The child's stderr is this file (opened with O_TRUNC: same inode), so it stands
    // for the journal's stream socket.
    const auto err_path = dir / "rollguard.stderr";
    writeFile(err_path, "");
    struct stat st {};
    REQUIRE(::stat(err_path.c_str(), &st) == 0);
    const std::string stream = std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" +
                               std::to_string(static_cast<unsigned long long>(st.st_ino));

    for (const bool journal : {true, false}) {
        RunningAgent agent(config, {}, {{"JOURNAL_STREAM", journal ? stream : std::string("1:1")}});
        const bool started =
            eventually([&] { return readFile(err_path).find("started with") != std::string::npos; }, 10s);
        INFO("journal " << journal << ": " << readFile(err_path));
        REQUIRE(started);
        agent.signal(SIGTERM);
        REQUIRE(agent.wait(20s) == 0);
        for (const auto& line : linesOf(readFile(err_path))) {
            INFO(line);
            if (journal) {
                CHECK((line.rfind("<6>info  ", 0) == 0 || line.rfind("<4>warning ", 0) == 0));
            } else {
                CHECK(line.size() > 30);
                CHECK(line.substr(0, 2) == "20");
                CHECK(line[10] == 'T');
            }
        }
    }
}
