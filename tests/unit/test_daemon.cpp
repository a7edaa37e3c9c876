// The daemon's wiring driven by a ManualClock: real log file -> tailer -> window -> rules
// -> env file hook, with no sleeping.

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "rollguard/agent/daemon.h"
#include "rollguard/agent/incidents.h"
#include "rollguard/exporters/http_server.h"
#include "rollguard/rules/duration.h"
#include "daemon_config.h"
#include "process.h"
#include "temp_dir.h"

using namespace rollguard;
using namespace std::chrono_literals;
using rollguard::testing::appendFile;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

std::string lines(int n, int errors, double ms) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += "{\"status\":" + std::to_string(i < errors ? 500 : 200) + ",\"duration_ms\":" + std::to_string(ms) + "}\n";
    }
    return out;
}

agent::Config makeConfig(const TempDir& dir) {
    agent::Config c = testing::daemonTestConfig(dir);
    c.rules.back().hooks = {"flip"};

    rules::RuleSpec warning;
    warning.name = "slow";
    warning.severity = rules::Severity::Warning;
    warning.source = "app";
    warning.metric = {rules::MetricKind::Quantile, 0.99, "p99"};
    warning.threshold = 0.1;
    warning.window = 10s;
    c.rules.push_back(warning);

    agent::HookConfig flip;
    flip.name = "flip";
    flip.type = agent::HookType::EnvFile;
    flip.path = (dir / "app.env").string();
    flip.set = {{"CANARY", "0"}};
    c.hooks.push_back(flip);
    return c;
}

}  // namespace

TEST_CASE("daemon: a sustained breach fires after exactly `for`, runs the rollback once", "[daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "# canary\nCANARY=1\n");
    rules::ManualClock clock;
    agent::Daemon daemon(makeConfig(dir), clock);

    auto step = [&](int n, int errors, double ms) {
        appendFile(dir / "app.log", lines(n, errors, ms));
        clock.advance(1s);
        daemon.pollSources();
        daemon.tick();
        return daemon.snapshot();
    };

    for (int i = 0; i < 5; ++i) {
        const auto s = step(100, 0, 20);
        CHECK(s.rules[0].state == rules::AlertState::Inactive);
        CHECK(s.rules[1].state == rules::AlertState::Inactive);
    }
    auto s = step(100, 0, 20);
    CHECK(s.sources[0].lines == 600);
    REQUIRE(s.rules[0].value.has_value());
    CHECK(*s.rules[0].value == 0.0);
    REQUIRE(s.rules[1].value.has_value());
    CHECK(*s.rules[1].value == Approx(0.020).epsilon(0.01));

    // 40 errors in 100 lines a second: the 10 s window passes 5% within a tick.
    s = step(100, 40, 20);
    const auto breach_start = clock.now();
    REQUIRE(s.rules[0].state == rules::AlertState::Pending);
    REQUIRE(s.rules[0].since.has_value());
    CHECK(*s.rules[0].since == breach_start);

    for (int i = 1; i < 5; ++i) {
        s = step(100, 40, 20);
        CHECK(s.rules[0].state == rules::AlertState::Pending);
    }
    s = step(100, 40, 20);  // now - since == for
    CHECK(s.rules[0].state == rules::AlertState::Firing);
    CHECK(s.incidents == 1);
    daemon.waitForHooks();
    CHECK(readFile(dir / "app.env") == "# canary\nCANARY=0\n");
    s = daemon.snapshot();
    CHECK(s.hooks[0].ok == 1);
    CHECK(s.rules[0].latched);

    // Healthy again: the window drains and the rule resolves.
    for (int i = 0; i < 11; ++i) {
        s = step(100, 0, 20);
    }
    CHECK(s.rules[0].state == rules::AlertState::Inactive);

    // A second breach fires again but the rollback stays latched.
    writeFile(dir / "app.env", "CANARY=1\n");
    for (int i = 0; i < 7; ++i) {
        s = step(100, 40, 20);
    }
    CHECK(s.rules[0].state == rules::AlertState::Firing);
    daemon.waitForHooks();
    CHECK(daemon.snapshot().hooks[0].ok == 1);
    CHECK(readFile(dir / "app.env") == "CANARY=1\n");
}

TEST_CASE("daemon: too few samples never fire, however bad they are", "[daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "CANARY=1\n");
    rules::ManualClock clock;
    agent::Daemon daemon(makeConfig(dir), clock);
    for (int i = 0; i < 20; ++i) {
        appendFile(dir / "app.log", lines(2, 2, 20));  // 100% errors, 20 lines per window < 50
        clock.advance(1s);
        daemon.pollSources();
        daemon.tick();
        CHECK(daemon.snapshot().rules[0].state == rules::AlertState::Inactive);
    }
    daemon.waitForHooks();
    CHECK(readFile(dir / "app.env") == "CANARY=1\n");
}

TEST_CASE("daemon: malformed lines are counted and skipped", "[daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", lines(3, 0, 10) + "not json\n[1,2]\n{\"status\":200,\"duration_ms\":\"abc\"}\n" +
                                   "{\"status\":200,\"route\":\"/caf\xC3\x28\"}\n" + lines(2, 0, 10));
    writeFile(dir / "app.env", "CANARY=1\n");
    rules::ManualClock clock;
    agent::Daemon daemon(makeConfig(dir), clock);
    daemon.pollSources();
    daemon.tick();
    const auto s = daemon.snapshot();
    CHECK(s.sources[0].lines == 9);
    CHECK(s.sources[0].bad_invalid_utf8 == 1);
    CHECK(s.sources[0].bad_invalid_json == 1);
    CHECK(s.sources[0].bad_not_object == 1);
    CHECK(s.sources[0].bad_latency == 1);
    CHECK(s.rules[0].samples == 5);
    CHECK(s.sources[0].window_bytes > 0);
}

TEST_CASE("daemon: tailer threads record while the evaluation ticks", "[daemon][thread]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "CANARY=1\n");
    auto config = makeConfig(dir);
    config.sources[0].poll_interval = 50ms;
    rules::ManualClock clock;
    agent::Daemon daemon(config, clock);
    daemon.start();
    std::uint64_t events = 0;
    for (int i = 0; i < 200; ++i) {
        appendFile(dir / "app.log", lines(10, 5, 20));
        clock.advance(20ms);
        daemon.tick();
        (void)daemon.snapshot();
    }
    // Let the tailer catch up, then the window holds every line (all within 10 s).
    rollguard::testing::eventually([&] {
        daemon.tick();
        events = static_cast<std::uint64_t>(daemon.snapshot().rules[0].samples);
        return events >= 2000;
    });
    daemon.stop();
    CHECK(events == 2000);
    CHECK(daemon.snapshot().sources[0].lines == 2000);
    CHECK(daemon.snapshot().rules[0].state != rules::AlertState::Inactive);
}

TEST_CASE("daemon: checkpoints are written when something changed, not while idle", "[daemon][checkpoint]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "CANARY=1\n");
    auto config = makeConfig(dir);
    config.agent.state_dir = (dir / "state").string();
    config.agent.checkpoint_interval = std::chrono::nanoseconds{1};
    rules::ManualClock clock;
    {
        agent::Daemon daemon(config, clock);
        auto step = [&](const std::string& text) {
            if (!text.empty()) {
                appendFile(dir / "app.log", text);
            }
            clock.advance(1s);
            daemon.pollSources();
            daemon.tick();
            return daemon.snapshot().checkpoints;
        };
        CHECK(step(lines(10, 1, 20)) == 1);
        CHECK(step("") == 1);  // idle: nothing new to say
        CHECK(step("") == 1);
        CHECK(step("not json\n") == 2);  // a bad line moves the read position
        CHECK(step(lines(5, 0, 20)) == 3);
        daemon.stop();
        CHECK(daemon.snapshot().checkpoints == 3);  // nothing new since: no final write
    }
    // A new daemon resumes: the window still holds the 15 events, the log is not re-read.
    agent::Daemon resumed(config, clock);
    resumed.pollSources();
    resumed.tick();
    CHECK(resumed.snapshot().rules[0].samples == 15);
    CHECK(resumed.snapshot().sources[0].lines == 0);
}

TEST_CASE("daemon: after the first checkpoint only what changed is appended, and a crash restores all of it",
          "[daemon][checkpoint]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "CANARY=1\n");
    auto config = makeConfig(dir);
    config.agent.state_dir = (dir / "state").string();
    config.agent.checkpoint_interval = std::chrono::nanoseconds{1};
    const auto base = dir / "state" / "checkpoint";
    const auto journal = dir / "state" / "checkpoint.journal";
    rules::ManualClock clock;
    {
        agent::Daemon daemon(config, clock);
        auto step = [&](int n) {
            appendFile(dir / "app.log", lines(n, 0, 20));
            clock.advance(1s);
            daemon.pollSources();
            daemon.tick();
            return daemon.snapshot();
        };
        auto s = step(10);
        CHECK(s.checkpoints == 1);
        CHECK(s.checkpoint_bases == 1);
        struct stat first {};
        REQUIRE(::stat(base.c_str(), &first) == 0);
        const auto journal_empty = std::filesystem::file_size(journal);
        for (int i = 0; i < 4; ++i) {
            s = step(5);
        }
        CHECK(s.checkpoints == 5);
        CHECK(s.checkpoint_bases == 1);  // the base was not written again
        struct stat now {};
        REQUIRE(::stat(base.c_str(), &now) == 0);
        CHECK(now.st_ino == first.st_ino);
        CHECK(std::filesystem::file_size(journal) > journal_empty);
        CHECK((std::filesystem::status(journal).permissions() & std::filesystem::perms::all) ==
              (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
        CHECK(s.checkpoint_bytes_written < 5 * std::filesystem::file_size(base) + 5 * 1024);
        daemon.stopWithoutSaving();  // as after kill -9: no final checkpoint
    }
    // The base and its four records: the window holds all 30 events, nothing is re-read.
    agent::Daemon resumed(config, clock);
    resumed.pollSources();
    resumed.tick();
    CHECK(resumed.snapshot().rules[0].samples == 30);
    CHECK(resumed.snapshot().sources[0].lines == 0);
}

TEST_CASE("daemon: a journal cut in its last record restores the record before it and reads the rest again",
          "[daemon][checkpoint]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "CANARY=1\n");
    auto config = makeConfig(dir);
    config.agent.state_dir = (dir / "state").string();
    config.agent.checkpoint_interval = std::chrono::nanoseconds{1};
    const auto journal = dir / "state" / "checkpoint.journal";
    rules::ManualClock clock;
    std::uintmax_t before_last = 0;
    {
        agent::Daemon daemon(config, clock);
        for (int n : {10, 5, 5, 7}) {
            before_last = std::filesystem::exists(journal) ? std::filesystem::file_size(journal) : 0;
            appendFile(dir / "app.log", lines(n, 0, 20));
            clock.advance(1s);
            daemon.pollSources();
            daemon.tick();
        }
        REQUIRE(daemon.snapshot().checkpoints == 4);
        daemon.stopWithoutSaving();  // as after kill -9
    }
    // A crash in the middle of the last append: half of its record is on disk.
    const auto size = std::filesystem::file_size(journal);
    REQUIRE(size > before_last + 2);
    std::filesystem::resize_file(journal, before_last + (size - before_last) / 2);
    // The state of the third checkpoint (20 events, positions after them); the last 7
    // lines are read again: all 27 in the window, once.
    agent::Daemon resumed(config, clock);
    resumed.pollSources();
    clock.advance(1s);
    resumed.tick();
    CHECK(resumed.snapshot().sources[0].lines == 7);
    CHECK(resumed.snapshot().rules[0].samples == 27);
}

TEST_CASE("daemon: a reload hands positions, windows and unchanged rules' state to the new config", "[daemon][reload]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "CANARY=1\n");
    rules::ManualClock clock;
    auto config = makeConfig(dir);  // no state_dir: the handoff is in memory only
    auto old_daemon = std::make_unique<agent::Daemon>(config, clock);
    const auto step = [&](agent::Daemon& d, int n, int errors) {
        appendFile(dir / "app.log", lines(n, errors, 20));
        clock.advance(1s);
        d.pollSources();
        d.tick();
        return d.snapshot();
    };
    for (int i = 0; i < 3; ++i) {
        step(*old_daemon, 100, 0);
    }
    auto s = step(*old_daemon, 100, 40);
    REQUIRE(s.rules[0].state == rules::AlertState::Pending);
    const auto since = *s.rules[0].since;
    // Lines written while the old daemon stops are read by the new one, once.
    appendFile(dir / "app.log", lines(100, 40, 20));
    auto handoff = old_daemon->stopForReload();
    old_daemon.reset();

    // The new config: "errors" unchanged, "slow" changed (threshold), a new rule.
    config.rules[1].threshold = 0.5;
    rules::RuleSpec added = config.rules[0];
    added.name = "errors-fast";
    added.for_ = 0s;
    added.hooks = {};
    config.rules.push_back(added);
    agent::Daemon next(config, clock, std::move(handoff));
    s = step(next, 0, 0);
    CHECK(s.sources[0].lines == 100);  // only what it read itself: the 100 lines from the gap
    // The 10 s window holds all 500 lines (400 before the reload, 100 after), 80 errors.
    REQUIRE(s.rules[0].value.has_value());
    CHECK(*s.rules[0].value == Approx(80.0 / 500.0));
    REQUIRE(s.rules[0].state == rules::AlertState::Pending);
    CHECK(*s.rules[0].since == since);  // `for` keeps counting across the reload
    CHECK(s.rules[1].state == rules::AlertState::Inactive);
    for (int i = 0; i < 3; ++i) {
        s = step(next, 100, 40);
        CHECK(s.rules[0].state == rules::AlertState::Pending);
    }
    s = step(next, 100, 40);
    // since + 5 s of `for`: fires on schedule, not 5 s after the reload.
    CHECK(s.rules[0].state == rules::AlertState::Firing);
    CHECK(clock.now() - since == 5s);
    next.waitForHooks();
    CHECK(readFile(dir / "app.env") == "CANARY=0\n");
}

TEST_CASE("daemon: an unwritable state_dir does not block the rollback, and its files are written when it returns",
          "[daemon][checkpoint]") {
    namespace fs = std::filesystem;
    TempDir dir;
    writeFile(dir / "app.log", "");
    writeFile(dir / "app.env", "# canary\nCANARY=1\n");
    auto config = makeConfig(dir);
    config.agent.state_dir = (dir / "state").string();
    config.agent.checkpoint_interval = std::chrono::nanoseconds{1};
    rules::ManualClock clock;
    {
        agent::Daemon daemon(config, clock);
        auto step = [&](int n, int errors) {
            appendFile(dir / "app.log", lines(n, errors, 20));
            clock.advance(1s);
            daemon.pollSources();
            daemon.tick();
            return daemon.snapshot();
        };
        auto s = step(100, 0);
        CHECK(s.checkpoints == 1);
        CHECK_FALSE(s.checkpoint_failing);

        // Disk full or read-only, as the daemon sees it: every write under state_dir
        // fails. A file where the directory was does that for root too (ENOTDIR).
        fs::rename(dir / "state", dir / "state.away");
        writeFile(dir / "state", "");
        const auto ticks_before = s.ticks;
        for (int i = 0; i < 6; ++i) {
            s = step(100, 40);
        }
        CHECK(s.ticks == ticks_before + 6);  // still evaluating
        CHECK(s.rules[0].state == rules::AlertState::Firing);
        CHECK(s.incidents == 1);
        daemon.waitForHooks();
        // The rollback ran although its record could not be written first.
        CHECK(readFile(dir / "app.env") == "# canary\nCANARY=0\n");
        s = daemon.snapshot();
        CHECK(s.hooks[0].ok == 1);
        CHECK(s.rules[0].latched);
        CHECK(s.checkpoint_failing);
        CHECK(s.checkpoint_failures >= 6);  // retried at every tick (checkpoint_interval 1 ns)
        CHECK(s.checkpoints == 1);
        CHECK_FALSE(s.last_checkpoint.has_value());
        CHECK(s.rules_state_failing);
        CHECK(s.rules_state_failures >= 1);
        CHECK(s.incident_records_failing);
        CHECK(s.incident_record_failures >= 1);
        CHECK(s.incident_records_unsaved == 1);
        CHECK(s.incidents_open == 0);  // the rollback itself is done

        // Space returns: the next tick writes the checkpoint, the rules' state (with the
        // latch) and the incident record, complete.
        fs::remove(dir / "state");
        fs::rename(dir / "state.away", dir / "state");
        s = step(100, 40);
        CHECK_FALSE(s.checkpoint_failing);
        CHECK(s.checkpoints == 2);
        CHECK(s.last_checkpoint.has_value());
        CHECK_FALSE(s.rules_state_failing);
        CHECK_FALSE(s.incident_records_failing);
        CHECK(s.incident_records_unsaved == 0);
        const auto records = agent::IncidentLog((dir / "state").string(), 100).list();
        REQUIRE(records.size() == 1);
        CHECK(records[0].complete);
        REQUIRE(records[0].hooks.size() == 1);
        CHECK(records[0].hooks[0].status == agent::HookStepStatus::Ok);
        CHECK(records[0].hooks[0].runs == 1);
        daemon.stop();
    }
    // The latch reached the disk: a restarted daemon does not roll back again.
    writeFile(dir / "app.env", "CANARY=1\n");
    agent::Daemon restarted(config, clock);
    for (int i = 0; i < 3; ++i) {
        appendFile(dir / "app.log", lines(100, 40, 20));
        clock.advance(1s);
        restarted.pollSources();
        restarted.tick();
    }
    restarted.waitForHooks();
    CHECK(restarted.snapshot().rules[0].latched);
    CHECK(restarted.snapshot().incidents == 0);
    CHECK(readFile(dir / "app.env") == "CANARY=1\n");
}

TEST_CASE("daemon: the preflight runs at start, gates the critical rule's hooks, and again on its interval",
          "[daemon][preflight]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    auto config = testing::daemonTestConfig(dir);
    config.agent.preflight_interval = std::chrono::seconds{1};
    agent::HookConfig restart;
    restart.name = "restart";
    restart.type = agent::HookType::Script;
    restart.command = {(dir / "rollback.sh").string()};
    agent::HookConfig note = restart;
    note.name = "note";
    config.hooks = {restart, note};
    config.rules[0].hooks = {"restart"};
    rules::RuleSpec warning = config.rules[0];
    warning.name = "warn";
    warning.severity = rules::Severity::Warning;
    warning.hooks = {"note"};
    config.rules.push_back(warning);

    rules::ManualClock clock(rules::TimePoint{} + std::chrono::seconds{1'790'000'000});
    agent::Daemon daemon(config, clock);
    {
        // Before start() no preflight has run: nothing to report yet.
        const auto s = daemon.snapshot();
        CHECK(s.preflight_checked);
        REQUIRE(s.hooks.size() == 2);
        CHECK(s.hooks[0].ready);
        CHECK(s.hooks[0].gating);
        CHECK_FALSE(s.hooks[1].gating);  // a warning's hook
    }
    daemon.start();
    REQUIRE(testing::eventually([&] { return daemon.snapshot().preflight_checked; }, 30s));
    {
        const auto s = daemon.snapshot();
        CHECK_FALSE(s.hooks[0].ready);
        REQUIRE(s.hooks[0].problems.size() == 1);
        CHECK(s.hooks[0].problems[0].find("does not exist") != std::string::npos);
        CHECK_FALSE(s.hooks[1].ready);
    }
    // Fixed: the next periodic pass (1 s) sees it, off the tick thread.
    writeFile(dir / "rollback.sh", "#!/bin/sh\nexit 0\n");
    REQUIRE(::chmod((dir / "rollback.sh").c_str(), 0755) == 0);
    CHECK(testing::eventually([&] { return daemon.snapshot().hooks[0].ready; }, 30s));
    CHECK(daemon.snapshot().hooks[0].problems.empty());
    daemon.stop();
}

TEST_CASE("daemon: a reload shows the previous preflight results until its own first pass",
          "[daemon][preflight][reload]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    auto config = testing::daemonTestConfig(dir);
    config.agent.preflight_interval = std::chrono::seconds{0};
    agent::HookConfig restart;
    restart.name = "restart";
    restart.type = agent::HookType::Script;
    restart.command = {(dir / "rollback.sh").string()};  // missing: not ready
    config.hooks = {restart};
    config.rules[0].hooks = {"restart"};
    rules::ManualClock clock(rules::TimePoint{} + std::chrono::seconds{1'790'000'000});

    agent::Daemon first(config, clock);
    first.start();
    REQUIRE(testing::eventually([&] { return first.snapshot().preflight_checked; }, 30s));
    REQUIRE_FALSE(first.snapshot().hooks[0].ready);
    auto handoff = first.stopForReload();
    REQUIRE(handoff.preflight.size() == 1);
    CHECK(handoff.preflight[0].hook == "restart");
    CHECK_FALSE(handoff.preflight[0].ready);

    // Before its own pass the new daemon shows the previous result, not "unchecked".
    agent::Daemon second(config, clock, std::move(handoff));
    {
        const auto s = second.snapshot();
        CHECK_FALSE(s.hooks[0].ready);
        CHECK(s.hooks[0].problems.size() == 1);
    }
    writeFile(dir / "rollback.sh", "#!/bin/sh\nexit 0\n");
    REQUIRE(::chmod((dir / "rollback.sh").c_str(), 0755) == 0);
    second.start();
    CHECK(second.snapshot().preflight_checked);  // seeded: no "not finished yet" window
    CHECK(testing::eventually([&] { return second.snapshot().hooks[0].ready; }, 30s));
    second.stop();
}

TEST_CASE("daemon: a script's output stays out of the status snapshot and goes into the incident record",
          "[daemon][secrets]") {
    // /api/v1/status is unauthenticated: a hook's last_message there is statusSummary()
    // (the exit status, no output); the 0600 incident record keeps the full message.
    TempDir dir;
    writeFile(dir / "app.log", "");
    agent::Config config = testing::daemonTestConfig(dir);
    config.agent.state_dir = (dir / "state").string();
    config.rules.back().hooks = {"undo"};
    agent::HookConfig undo;
    undo.name = "undo";
    undo.type = agent::HookType::Script;
    undo.command = {"/bin/sh", "-c", "echo 'DB_PASSWORD=hunter2-s3cret'; echo second line >&2; exit 3"};
    undo.retries = 0;
    config.hooks.push_back(undo);
    rules::ManualClock clock;
    agent::Daemon daemon(config, clock);

    for (int i = 0; i < 7; ++i) {
        appendFile(dir / "app.log", lines(100, 40, 20));
        clock.advance(1s);
        daemon.pollSources();
        daemon.tick();
    }
    daemon.waitForHooks();
    const agent::StatusSnapshot s = daemon.snapshot();
    REQUIRE(s.incidents == 1);
    REQUIRE(s.hooks.size() == 1);
    CHECK(s.hooks[0].failed == 1);
    CHECK(s.hooks[0].last_message == "exit status 3 (output in the incident record)");
    const std::string status = exporters::renderStatusJson(s);
    CHECK(status.find("hunter2") == std::string::npos);
    CHECK(status.find("second line") == std::string::npos);
    CHECK(status.find("exit status 3 (output in the incident record)") != std::string::npos);

    const auto records = agent::IncidentLog(config.agent.state_dir, 10).list();
    REQUIRE(records.size() == 1);
    REQUIRE(records[0].hooks.size() == 1);
    CHECK_THAT(records[0].hooks[0].message, Catch::StartsWith("exit status 3: "));
    CHECK_THAT(records[0].hooks[0].message, Catch::Contains("DB_PASSWORD=hunter2-s3cret"));
}

TEST_CASE("statusSummary: the summary or the message, first line, at most 200 bytes on a character boundary",
          "[hooks][secrets]") {
    agent::HookResult r;
    r.message = "HTTP 500: line one\nline two";
    CHECK(agent::statusSummary(r) == "HTTP 500: line one");
    r.summary = "exit status 1 (output in the incident record)";
    CHECK(agent::statusSummary(r) == "exit status 1 (output in the incident record)");
    r.summary.clear();
    r.message = std::string(199, 'a') + "\xC3\xA9" + "tail";  // é straddles byte 200
    CHECK(agent::statusSummary(r) == std::string(199, 'a') + "...");
    r.message = std::string(200, 'b');
    CHECK(agent::statusSummary(r) == std::string(200, 'b'));
}

namespace {

/// A clock read by a tick that wakes a little early or late: the tick's scheduled time
/// plus a jitter the test sets, as a real wake-up reads the wall clock. Thread-safe.
class JitteryClock final : public rules::Clock {
public:
    rules::TimePoint now() const override {
        std::lock_guard lock(mutex_);
        return scheduled_ + jitter_;
    }
    /// The next wake-up, `step` after the last scheduled one.
    void nextTick(std::chrono::microseconds jitter, std::chrono::nanoseconds step = 1s) {
        std::lock_guard lock(mutex_);
        scheduled_ += std::chrono::duration_cast<rules::TimePoint::duration>(step);
        jitter_ = jitter;
    }

private:
    mutable std::mutex mutex_;
    rules::TimePoint scheduled_{std::chrono::seconds{1'700'000'000}};
    std::chrono::microseconds jitter_{0};
};

}  // namespace

TEST_CASE("daemon: `for` is exact on the evaluation grid while the clock readings jitter", "[daemon][timing]") {
    // The breach starts at a random evaluation, every wake-up reads the clock up to 3 ms
    // early or late. A rule deciding on raw readings fires one evaluation late whenever
    // the evaluation at since + `for` wakes earlier than the one that saw the breach
    // begin. Once with one evaluation a tick (64 trials), once with the default ten
    // (32 trials, the breach at any tenth of a second).
    struct Case {
        std::chrono::nanoseconds every;
        int trials;
    };
    const Case c = GENERATE(Case{1s, 64}, Case{100ms, 32});
    const int per_second = static_cast<int>(1s / c.every);
    const int for_steps = 5 * per_second;  // for 5 s
    std::mt19937 random(20261207);
    std::uniform_int_distribution<int> jitter_us(-3000, 3000);
    std::uniform_int_distribution<int> breach_step(6 * per_second, 12 * per_second);
    int on_time = 0;
    for (int trial = 0; trial < c.trials; ++trial) {
        TempDir dir;
        writeFile(dir / "app.log", "");
        JitteryClock clock;
        agent::Config config = testing::daemonTestConfig(dir);  // for 5 s, tick 1 s
        config.agent.evaluation_interval = c.every;
        agent::Daemon daemon(std::move(config), clock);
        const int breach_from = breach_step(random);
        std::optional<int> pending_at;
        std::optional<int> firing_at;
        for (int k = 1; k <= breach_from + for_steps + 2 * per_second && !firing_at; ++k) {
            // Before the breach 100 lines a second; from it 100 failing lines an evaluation,
            // so that the very first one breaches (error_ratio above 0.05 over 10 s).
            const bool breach = k >= breach_from;
            appendFile(dir / "app.log", lines(breach ? 100 : 100 / per_second, breach ? 100 : 0, 20));
            clock.nextTick(std::chrono::microseconds{jitter_us(random)}, c.every);
            daemon.pollSources();
            daemon.tick();
            const auto s = daemon.snapshot();
            if (s.rules[0].state == rules::AlertState::Pending && !pending_at) {
                pending_at = k;
            }
            if (s.rules[0].state == rules::AlertState::Firing) {
                firing_at = k;
            }
        }
        INFO("every " << rules::formatDuration(c.every) << ", trial " << trial << ": breach from evaluation "
                      << breach_from);
        REQUIRE(pending_at);
        REQUIRE(firing_at);
        CHECK(*pending_at == breach_from);
        CHECK(*firing_at - *pending_at == for_steps);
        on_time += *firing_at - *pending_at == for_steps ? 1 : 0;
        daemon.stopWithoutSaving();
    }
    CHECK(on_time == c.trials);
}

TEST_CASE("daemon: `rate` is exact from the first tick after start to the steady state (arrival time)",
          "[daemon][rate]") {
    // 10 lines arrive between each two ticks: every rate the judge reports is 10/s, over a
    // window still filling and over a full one; neither rule goes pending on the way.
    TempDir dir;
    writeFile(dir / "app.log", "");
    rules::ManualClock clock;
    agent::Config config = testing::daemonTestConfig(dir);
    config.agent.evaluation_interval = 1s;  // the clock moves a second per evaluation
    config.rules.clear();
    for (const bool below : {true, false}) {
        rules::RuleSpec r;
        r.name = below ? "too-few" : "too-many";
        r.severity = rules::Severity::Warning;
        r.source = "app";
        r.metric = {rules::MetricKind::Rate, 0.0, "rate"};
        r.comparison = below ? rules::Comparison::Below : rules::Comparison::Above;
        r.threshold = below ? 9.99 : 10.01;
        r.window = 30s;
        config.rules.push_back(r);
    }
    agent::Daemon daemon(std::move(config), clock);
    daemon.pollSources();
    daemon.tick();  // at start: nothing has arrived yet, over no time at all
    CHECK_FALSE(daemon.snapshot().rules[0].value);
    for (int k = 1; k <= 45; ++k) {
        appendFile(dir / "app.log", lines(10, 0, 20));
        clock.advance(1s);
        daemon.pollSources();
        daemon.tick();
        const auto s = daemon.snapshot();
        INFO("tick " << k);
        for (const auto& rule : s.rules) {
            REQUIRE(rule.value);
            CHECK(*rule.value == Approx(10.0).epsilon(1e-12));
            CHECK(rule.state == rules::AlertState::Inactive);
        }
    }
}

// Under a sanitizer the sanitizer's allocator serves every allocation, and glibc's
// (whose figures the heap_* fields are) sees none of them.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ROLLGUARD_TEST_GLIBC_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ROLLGUARD_TEST_GLIBC_MALLOC 0
#endif
#endif
#ifndef ROLLGUARD_TEST_GLIBC_MALLOC
#define ROLLGUARD_TEST_GLIBC_MALLOC 1
#endif

TEST_CASE("daemon: the status says where the memory goes", "[daemon][memory]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    rules::ManualClock clock;
    agent::Config config = makeConfig(dir);
    config.agent.state_dir = (dir / "state").string();
    config.agent.checkpoint_interval = std::chrono::nanoseconds{1};
    agent::Daemon daemon(std::move(config), clock);
    for (int i = 0; i < 3; ++i) {
        appendFile(dir / "app.log", lines(100, 0, 20));
        clock.advance(1s);
        daemon.pollSources();
        daemon.tick();
    }
    auto s = daemon.snapshot();
    const auto& m = s.memory;
    CHECK(m.rss_bytes > 0);
    CHECK(m.anon_bytes > 0);
    CHECK(m.file_bytes > 0);
    CHECK(m.anon_bytes + m.file_bytes <= m.rss_bytes + 64 * 1024);  // RssShmem is the rest
    if (ROLLGUARD_TEST_GLIBC_MALLOC) {
        CHECK(m.heap_in_use_bytes > 0);
    }
    REQUIRE(s.sources.size() == 1);
    CHECK(m.windows_bytes == s.sources[0].window_bytes);  // one source, no scrapes
    CHECK(m.windows_bytes > 0);
    // The checkpoint on disk: its base and its journal.
    CHECK(m.checkpoint_bytes == std::filesystem::file_size(dir / "state" / "checkpoint") +
                                    std::filesystem::file_size(dir / "state" / "checkpoint.journal"));

    // 64 MiB held and touched by this process shows in the allocator's and the kernel's view.
    const auto before = m;
    std::vector<char> held(64u << 20, 1);
    clock.advance(1s);
    daemon.tick();
    s = daemon.snapshot();
    if (ROLLGUARD_TEST_GLIBC_MALLOC) {
        CHECK(s.memory.heap_in_use_bytes >= before.heap_in_use_bytes + (60u << 20));
    }
    CHECK(s.memory.anon_bytes >= before.anon_bytes + (60u << 20));
    CHECK(held[12345] == 1);
    daemon.stopWithoutSaving();
}
