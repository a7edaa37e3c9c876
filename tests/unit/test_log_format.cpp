// The agent's own log lines: log_format = "json" gives one JSON object per line whatever
// the message holds; the text format keeps its timestamp except on the journal.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <simdjson.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "rollguard/agent/log_format.h"
#include "temp_dir.h"

using rollguard::agent::formatJsonLogRecord;
using rollguard::agent::isJournalStream;
using rollguard::agent::LogFormat;
using rollguard::agent::makeLogFormatter;
using rollguard::testing::TempDir;

namespace {

/// A logger writing through `format` into a string.
struct Captured {
    explicit Captured(LogFormat format, bool journal = false)
        : sink(std::make_shared<spdlog::sinks::ostream_sink_st>(out)),
          logger(std::make_shared<spdlog::logger>("rollguard", sink)) {
        logger->set_formatter(makeLogFormatter(format, journal));
        logger->set_level(spdlog::level::trace);
    }
    std::vector<std::string> lines() const {
        std::vector<std::string> result;
        std::istringstream in(out.str());
        for (std::string line; std::getline(in, line);) {
            result.push_back(line);
        }
        return result;
    }
    std::ostringstream out;
    std::shared_ptr<spdlog::sinks::ostream_sink_st> sink;
    std::shared_ptr<spdlog::logger> logger;
};

struct Record {
    std::string ts;
    std::string level;
    std::string msg;
    std::string logger;
    std::size_t fields = 0;
};

/// The fields of one JSON log line; nullopt (after a failed CHECK) when it is not a JSON
/// object with four string fields.
std::optional<Record> parseRecord(const std::string& line) {
    simdjson::dom::parser parser;
    simdjson::dom::object object;
    if (parser.parse(line).get(object) != simdjson::SUCCESS) {
        FAIL_CHECK("not a JSON object: " << line);
        return std::nullopt;
    }
    Record r;
    for (auto [key, value] : object) {
        ++r.fields;
        std::string_view text;
        if (value.get(text) != simdjson::SUCCESS) {
            FAIL_CHECK("field " << key << " is not a string: " << line);
            return std::nullopt;
        }
        if (key == "ts") {
            r.ts = std::string(text);
        } else if (key == "level") {
            r.level = std::string(text);
        } else if (key == "msg") {
            r.msg = std::string(text);
        } else if (key == "logger") {
            r.logger = std::string(text);
        }
    }
    return r;
}

/// True when `ts` looks like 2026-12-01T11:29:45.123+00:00 (digits where digits go).
bool isRfc3339Millis(const std::string& ts) {
    const std::string shape = "dddd-dd-ddTdd:dd:dd.ddd+dd:dd";
    if (ts.size() != shape.size()) {
        return false;
    }
    for (std::size_t i = 0; i < shape.size(); ++i) {
        const bool digit = ts[i] >= '0' && ts[i] <= '9';
        if (shape[i] == 'd' ? !digit : (shape[i] == '+' ? ts[i] != '+' && ts[i] != '-' : ts[i] != shape[i])) {
            return false;
        }
    }
    return true;
}

/// Sets TZ for the scope and restores it after.
class ScopedTimeZone {
public:
    explicit ScopedTimeZone(const char* tz) {
        if (const char* old = std::getenv("TZ")) {
            previous_ = old;
        }
        ::setenv("TZ", tz, 1);
        ::tzset();
    }
    ~ScopedTimeZone() {
        if (previous_) {
            ::setenv("TZ", previous_->c_str(), 1);
        } else {
            ::unsetenv("TZ");
        }
        ::tzset();
    }
    ScopedTimeZone(const ScopedTimeZone&) = delete;
    ScopedTimeZone& operator=(const ScopedTimeZone&) = delete;

private:
    std::optional<std::string> previous_;
};

}  // namespace

TEST_CASE("json log lines parse whatever the message holds", "[log_format]") {
    const std::vector<std::string> messages = {
        "plain",
        "say \"hi\" to 'them'",
        "two\nlines\r\nand a tab\there",
        "C:\\path\\to\\file and a trailing backslash \\",
        "control \x01\x02\x1f and DEL \x7f",
        "unicode: caf\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x9a\x80",
        std::string("a NUL \0 inside", 14),
        "{\"looks\": \"like json\"}",
        "",
    };
    Captured c(LogFormat::Json);
    for (const auto& m : messages) {
        c.logger->info("{}", m);
    }
    const auto lines = c.lines();
    REQUIRE(lines.size() == messages.size());
    for (std::size_t i = 0; i < lines.size(); ++i) {
        INFO("line " << i << ": " << lines[i]);
        const auto r = parseRecord(lines[i]);
        REQUIRE(r);
        CHECK(r->fields == 4);
        CHECK(r->msg == messages[i]);
        CHECK(r->level == "info");
        CHECK(r->logger == "rollguard");
        CHECK(isRfc3339Millis(r->ts));
    }
}

TEST_CASE("json log lines replace invalid UTF-8 with U+FFFD", "[log_format]") {
    const std::string replacement = "\xef\xbf\xbd";
    Captured c(LogFormat::Json);
    c.logger->warn("{}", std::string("bad \xff byte"));
    c.logger->warn("{}", std::string("truncated \xe2\x82"));
    c.logger->warn("{}", std::string("overlong \xc0\xaf slash"));
    c.logger->warn("{}", std::string("surrogate \xed\xa0\x80 half"));
    const auto lines = c.lines();
    REQUIRE(lines.size() == 4);
    std::vector<std::string> msgs;
    for (const auto& line : lines) {
        INFO(line);
        const auto r = parseRecord(line);
        REQUIRE(r);
        CHECK(r->level == "warn");
        msgs.push_back(r->msg);
    }
    CHECK(msgs[0] == "bad " + replacement + " byte");
    CHECK(msgs[1].rfind("truncated ", 0) == 0);
    CHECK(msgs[1].find(replacement) != std::string::npos);
    CHECK(msgs[2].find(replacement) != std::string::npos);
    CHECK(msgs[2].find("\xc0") == std::string::npos);
    CHECK(msgs[3].find(replacement) != std::string::npos);
    CHECK(msgs[3].find("\xed") == std::string::npos);
}

TEST_CASE("json log levels use the names of the config", "[log_format]") {
    Captured c(LogFormat::Json);
    c.logger->trace("t");
    c.logger->debug("d");
    c.logger->info("i");
    c.logger->warn("w");
    c.logger->error("e");
    c.logger->critical("c");
    std::vector<std::string> levels;
    for (const auto& line : c.lines()) {
        const auto r = parseRecord(line);
        REQUIRE(r);
        levels.push_back(r->level);
    }
    CHECK(levels == std::vector<std::string>{"trace", "debug", "info", "warn", "error", "critical"});
}

TEST_CASE("json log ts is local time with milliseconds and the zone's offset", "[log_format]") {
    using namespace std::chrono;
    // 2026-12-01T11:29:45.123Z
    const system_clock::time_point t{milliseconds{1'796'124'585'123}};
    const auto tsOf = [&](const char* tz) {
        ScopedTimeZone zone(tz);
        const auto r = parseRecord(formatJsonLogRecord(t, "info", "rollguard", "m"));
        return r ? r->ts : std::string();
    };
    CHECK(tsOf("UTC0") == "2026-12-01T11:29:45.123+00:00");
    CHECK(tsOf("<+0530>-5:30") == "2026-12-01T16:59:45.123+05:30");
    CHECK(tsOf("<-03>3") == "2026-12-01T08:29:45.123-03:00");
    // Before 1970 the millisecond part still counts up from the second before.
    ScopedTimeZone zone("UTC0");
    const auto r = parseRecord(formatJsonLogRecord(system_clock::time_point{milliseconds{-1}}, "info", "x", "m"));
    REQUIRE(r);
    CHECK(r->ts == "1969-12-31T23:59:59.999+00:00");
    CHECK(formatJsonLogRecord(t, "info", "rollguard", "m").back() == '\n');
}

TEST_CASE("text log lines keep their timestamp except on the journal", "[log_format]") {
    Captured plain(LogFormat::Text);
    plain.logger->info("hello \"there\"");
    const auto lines = plain.lines();
    REQUIRE(lines.size() == 1);
    // 2026-12-01T11:29:45.123+00:00 info  hello "there"
    REQUIRE(lines[0].size() > 29);
    CHECK(isRfc3339Millis(lines[0].substr(0, 29)));
    CHECK(lines[0].substr(29) == " info  hello \"there\"");

    Captured journal(LogFormat::Text, true);
    journal.logger->debug("d");
    journal.logger->info("i");
    journal.logger->warn("w");
    journal.logger->error("e");
    journal.logger->critical("c");
    CHECK(journal.lines() == std::vector<std::string>{"<7>debug d", "<6>info  i", "<4>warning w", "<3>error e",
                                                      "<2>critical c"});

    // The journal does not change JSON lines: a pipeline wants ts and nothing but JSON.
    Captured json(LogFormat::Json, true);
    json.logger->info("i");
    REQUIRE(json.lines().size() == 1);
    const auto r = parseRecord(json.lines()[0]);
    REQUIRE(r);
    CHECK(isRfc3339Millis(r->ts));
}

TEST_CASE("JOURNAL_STREAM matches only the file it names", "[log_format]") {
    TempDir dir;
    const auto path = (dir / "stream").string();
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    const std::string dev = std::to_string(static_cast<unsigned long long>(st.st_dev));
    const std::string ino = std::to_string(static_cast<unsigned long long>(st.st_ino));

    CHECK(isJournalStream((dev + ":" + ino).c_str(), fd));
    CHECK_FALSE(isJournalStream((dev + ":" + ino + "1").c_str(), fd));
    CHECK_FALSE(isJournalStream(("1" + dev + ":" + ino).c_str(), fd));
    CHECK_FALSE(isJournalStream(nullptr, fd));
    for (const std::string& bad : std::vector<std::string>{"", ":", dev + ":", ":" + ino, dev + ":" + ino + "x", "x" + dev + ":" + ino,
                                  dev + ino, dev + ":-" + ino}) {
        INFO("JOURNAL_STREAM=" << bad);
        CHECK_FALSE(isJournalStream(bad.c_str(), fd));
    }
    ::close(fd);
    CHECK_FALSE(isJournalStream((dev + ":" + ino).c_str(), fd));  // closed: fstat fails
}
