// The progressive rollout wired into the daemon, driven by a ManualClock: real log file ->
// rules -> the controller's gate -> env-file hooks writing ROLLOUT_PERCENT, rollout.json
// persisted and restored, commands through the tick thread's queue.

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>

#include <catch2/catch.hpp>

#include "rollguard/agent/daemon.h"
#include "rollguard/exporters/http_server.h"
#include "daemon_config.h"
#include "temp_dir.h"

using namespace rollguard;
using namespace std::chrono_literals;
using rollguard::testing::appendFile;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace {

std::string lines(int n, int errors) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += "{\"status\":" + std::to_string(i < errors ? 500 : 200) + ",\"duration_ms\":20}\n";
    }
    return out;
}

/// One source, a critical error-ratio rule (window 10 s, for 5 s, no hooks of its own) and
/// a [rollout] 5 -> 25 -> 50 -> 100 holding 10 s per stage, whose hook writes
/// ROLLOUT_PERCENT into app.env and whose rollback hook writes ROLLED_BACK=1 into
/// notify.env.
agent::Config makeConfig(const TempDir& dir, agent::RolloutConfig::OnCritical on_critical) {
    agent::Config c = testing::daemonTestConfig(dir);
    c.agent.checkpoint_interval = 5s;

    agent::HookConfig percent;
    percent.name = "percent";
    percent.type = agent::HookType::EnvFile;
    percent.path = (dir / "app.env").string();
    percent.set = {{"ROLLOUT_PERCENT", "{{rollout_percent}}"}};
    c.hooks.push_back(percent);
    agent::HookConfig notify;
    notify.name = "notify";
    notify.type = agent::HookType::EnvFile;
    notify.path = (dir / "notify.env").string();
    notify.set = {{"ROLLED_BACK", "1"}};
    c.hooks.push_back(notify);

    agent::RolloutConfig rollout;
    rollout.stages = {5, 25, 50, 100};
    rollout.hold = {10s, 10s, 10s, 10s};
    rollout.on_critical = on_critical;
    rollout.cooldown = 20s;
    rollout.max_rollbacks = 3;
    rollout.hooks = {"percent"};
    rollout.rollback_hooks = {"notify"};
    c.rollout = rollout;
    return c;
}

struct Fixture {
    explicit Fixture(agent::RolloutConfig::OnCritical on_critical = agent::RolloutConfig::OnCritical::Previous) {
        writeFile(dir / "app.log", "");
        writeFile(dir / "app.env", "# the service's env\nROLLOUT_PERCENT=0\n");
        writeFile(dir / "notify.env", "ROLLED_BACK=0\n");
        config = makeConfig(dir, on_critical);
    }
    /// One second of 100 lines (`errors` of them 500s), then a tick.
    agent::StatusSnapshot step(agent::Daemon& daemon, int errors = 0) {
        appendFile(dir / "app.log", lines(100, errors));
        clock.advance(1s);
        daemon.pollSources();
        daemon.tick();
        return daemon.snapshot();
    }
    std::string percentFile() { return readFile(dir / "app.env"); }

    TempDir dir;
    rules::ManualClock clock;
    agent::Config config;
};

std::string envWith(int percent) {
    return "# the service's env\nROLLOUT_PERCENT=" + std::to_string(percent) + "\n";
}

}  // namespace

TEST_CASE("daemon rollout: starts at the first stage and promotes after each quiet hold", "[daemon][rollout]") {
    Fixture f;
    agent::Daemon daemon(f.config, f.clock);
    REQUIRE(daemon.snapshot().rollout.has_value());
    CHECK(daemon.snapshot().rollout->percent == 0);

    auto s = f.step(daemon);
    REQUIRE(s.rollout);
    CHECK(s.rollout->percent == 5);
    CHECK(s.rollout->stage == 0);
    CHECK(s.rollout->phase == agent::RolloutPhase::Holding);
    CHECK(s.rollout->gate == std::vector<std::string>{"errors"});
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(5));

    for (int i = 0; i < 9; ++i) {
        s = f.step(daemon);
        CHECK(s.rollout->percent == 5);
    }
    CHECK(s.rollout->held == 9s);
    CHECK(s.rollout->hold == 10s);
    s = f.step(daemon);  // 10 s held
    CHECK(s.rollout->percent == 25);
    CHECK(s.rollout->promotions == 2);
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(25));
    CHECK(readFile(f.dir / "notify.env") == "ROLLED_BACK=0\n");  // not a rollback

    for (int stage : {50, 100}) {
        for (int i = 0; i < 10; ++i) {
            s = f.step(daemon);
        }
        CHECK(s.rollout->percent == stage);
        daemon.waitForHooks();
        CHECK(f.percentFile() == envWith(stage));
    }
    for (int i = 0; i < 10; ++i) {
        s = f.step(daemon);
    }
    CHECK(s.rollout->phase == agent::RolloutPhase::Complete);
    CHECK(s.rollout->percent == 100);
    REQUIRE(!s.rollout->history.empty());
    CHECK(s.rollout->history.back().action == "complete");
    CHECK(s.hooks[0].ok == 4);  // 5, 25, 50, 100

    const std::string metrics = exporters::renderMetrics(s);
    CHECK(metrics.find("rollguard_rollout_stage_percent 100\n") != std::string::npos);
    CHECK(metrics.find("rollguard_rollout_stage 3\n") != std::string::npos);
    CHECK(metrics.find("rollguard_rollout_phase{phase=\"complete\"} 1\n") != std::string::npos);
    CHECK(metrics.find("rollguard_rollout_phase{phase=\"holding\"} 0\n") != std::string::npos);
    CHECK(metrics.find("rollguard_rollout_promotions_total 4\n") != std::string::npos);
    const std::string status = exporters::renderStatusJson(s);
    CHECK(status.find("\"rollout\":{\"stages\":[5,25,50,100],\"stage\":3,\"percent\":100,\"phase\":\"complete\"") !=
          std::string::npos);
}

TEST_CASE("daemon rollout: a pending gate rule holds the stage and resets the held time", "[daemon][rollout]") {
    Fixture f;
    agent::Daemon daemon(f.config, f.clock);
    auto s = f.step(daemon);
    REQUIRE(s.rollout->percent == 5);
    for (int i = 0; i < 8; ++i) {
        s = f.step(daemon);
    }
    CHECK(s.rollout->held == 8s);
    s = f.step(daemon, 100);  // 100 errors in the 10 s window's 1000 lines: pending, not quiet
    CHECK(s.rules[0].state == rules::AlertState::Pending);
    CHECK(s.rollout->held == 0s);
    CHECK(s.rollout->percent == 5);
}

TEST_CASE("daemon rollout: a firing critical rule rolls back to the previous stage and runs the rollback hooks",
          "[daemon][rollout]") {
    Fixture f;
    agent::Daemon daemon(f.config, f.clock);
    agent::StatusSnapshot s;
    for (int i = 0; i < 11; ++i) {
        s = f.step(daemon);
    }
    REQUIRE(s.rollout->percent == 25);
    daemon.waitForHooks();
    REQUIRE(f.percentFile() == envWith(25));

    // 40% errors: pending after two seconds, firing 5 s later.
    for (int i = 0; i < 12 && s.rules[0].state != rules::AlertState::Firing; ++i) {
        s = f.step(daemon, 40);
    }
    REQUIRE(s.rules[0].state == rules::AlertState::Firing);
    CHECK(s.rollout->percent == 5);
    CHECK(s.rollout->phase == agent::RolloutPhase::Cooldown);
    CHECK(s.rollout->rollbacks_total == 1);
    REQUIRE(s.rollout->cooldown_until.has_value());
    CHECK(*s.rollout->cooldown_until == f.clock.now() + 20s);
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(5));
    CHECK(readFile(f.dir / "notify.env") == "ROLLED_BACK=1\n");
    CHECK(exporters::renderMetrics(daemon.snapshot()).find("rollguard_rollout_rollbacks_total 1\n") !=
          std::string::npos);

    // Healthy again: no promotion before the cooldown ends, then a full hold at 5 %.
    for (int i = 0; i < 19; ++i) {
        s = f.step(daemon);
        CHECK(s.rollout->percent == 5);
    }
    for (int i = 0; i < 15 && s.rollout->percent == 5; ++i) {
        s = f.step(daemon);
    }
    CHECK(s.rollout->percent == 25);
    CHECK(s.rearms == 1);  // the new attempt cleared the rules' latches
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(25));
}

TEST_CASE("daemon rollout: on_critical zero rolls back to 0 percent", "[daemon][rollout]") {
    Fixture f(agent::RolloutConfig::OnCritical::Zero);
    agent::Daemon daemon(f.config, f.clock);
    agent::StatusSnapshot s;
    for (int i = 0; i < 11; ++i) {
        s = f.step(daemon);
    }
    REQUIRE(s.rollout->percent == 25);
    for (int i = 0; i < 12 && s.rollout->percent == 25; ++i) {
        s = f.step(daemon, 40);
    }
    CHECK(s.rollout->percent == 0);
    CHECK(s.rollout->stage == -1);
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(0));
    CHECK(exporters::renderMetrics(s).find("rollguard_rollout_stage -1\n") != std::string::npos);
}

TEST_CASE("daemon rollout: rollout.json is written 0600 and a new daemon resumes the stage with its held time",
          "[daemon][rollout][checkpoint]") {
    Fixture f;
    f.config.agent.state_dir = (f.dir / "state").string();
    const auto path = f.dir / "state" / "rollout.json";
    {
        agent::Daemon daemon(f.config, f.clock);
        auto s = f.step(daemon);
        REQUIRE(s.rollout->percent == 5);
        // The stage change is written at once.
        REQUIRE(std::filesystem::exists(path));
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        CHECK(readFile(path).find("\"percent\":5") != std::string::npos);
        for (int i = 0; i < 10; ++i) {
            s = f.step(daemon);
        }
        REQUIRE(s.rollout->percent == 25);
        for (int i = 0; i < 6; ++i) {
            s = f.step(daemon);
        }
        CHECK(s.rollout->held == 6s);
        daemon.stop();  // the final held time goes to disk
    }
    // The clock moves on while no agent runs: downtime never counts as held.
    f.clock.advance(1h);
    agent::Daemon resumed(f.config, f.clock);
    auto s = resumed.snapshot();
    REQUIRE(s.rollout);
    CHECK(s.rollout->percent == 25);
    CHECK(s.rollout->held == 6s);
    s = f.step(resumed);  // the first tick after a restart adds nothing
    CHECK(s.rollout->held == 6s);
    CHECK(s.rollout->percent == 25);
    for (int i = 0; i < 4; ++i) {
        s = f.step(resumed);
    }
    CHECK(s.rollout->percent == 50);  // 6 s before the restart + 4 s after
    resumed.waitForHooks();
    CHECK(f.percentFile() == envWith(50));
}

TEST_CASE("daemon rollout: an unwritable rollout.json keeps the rollout moving and is written when the disk returns",
          "[daemon][rollout][checkpoint]") {
    Fixture f;
    f.config.agent.state_dir = (f.dir / "state").string();
    const auto state = f.dir / "state";
    agent::Daemon daemon(f.config, f.clock);
    auto s = f.step(daemon);
    REQUIRE(s.rollout->percent == 5);
    CHECK_FALSE(s.rollout->state_failing);

    // A file where the directory was: every write fails (ENOTDIR), even as root.
    std::filesystem::rename(state, f.dir / "state.away");
    writeFile(state, "");
    for (int i = 0; i < 10; ++i) {
        s = f.step(daemon);
    }
    CHECK(s.rollout->percent == 25);  // promoted all the same
    CHECK(s.rollout->state_failing);
    const auto failures = s.rollout->state_failures;
    CHECK(failures >= 1);

    std::filesystem::remove(state);
    std::filesystem::rename(f.dir / "state.away", state);
    s = f.step(daemon);
    CHECK_FALSE(s.rollout->state_failing);
    CHECK(s.rollout->state_failures == failures);
    CHECK(readFile(state / "rollout.json").find("\"percent\":25") != std::string::npos);
}

TEST_CASE("daemon rollout: a corrupt rollout.json is ignored with a fresh start", "[daemon][rollout][checkpoint]") {
    Fixture f;
    f.config.agent.state_dir = (f.dir / "state").string();
    std::filesystem::create_directories(f.dir / "state");
    writeFile(f.dir / "state" / "rollout.json", "{\"version\":1,\"stage\":");
    agent::Daemon daemon(f.config, f.clock);
    CHECK(daemon.snapshot().rollout->percent == 0);
    auto s = f.step(daemon);
    CHECK(s.rollout->percent == 5);
    CHECK(readFile(f.dir / "state" / "rollout.json").find("\"percent\":5") != std::string::npos);
}

TEST_CASE("daemon rollout: commands are applied at the next tick on the tick thread", "[daemon][rollout]") {
    Fixture f;
    agent::Daemon daemon(f.config, f.clock);
    auto s = f.step(daemon);
    REQUIRE(s.rollout->percent == 5);

    auto paused = daemon.requestRollout(agent::RolloutCommand::Pause, "investigating");
    CHECK(paused.wait_for(0s) == std::future_status::timeout);  // queued, not applied yet
    s = f.step(daemon);
    REQUIRE(paused.wait_for(0s) == std::future_status::ready);
    CHECK(paused.get().ok);
    CHECK(s.rollout->paused);
    CHECK(s.rollout->history.back().action == "pause");
    CHECK(s.rollout->history.back().reason == "investigating");
    for (int i = 0; i < 15; ++i) {
        s = f.step(daemon);
    }
    CHECK(s.rollout->percent == 5);  // no promotion while paused

    auto again = daemon.requestRollout(agent::RolloutCommand::Pause, "");
    f.step(daemon);
    CHECK_FALSE(again.get().ok);  // already paused: refused with why
    CHECK_FALSE(again.get().message.empty());

    auto promoted = daemon.requestRollout(agent::RolloutCommand::Promote, "looks fine");
    s = f.step(daemon);
    REQUIRE(promoted.get().ok);
    REQUIRE(promoted.get().action.has_value());
    CHECK(s.rollout->percent == 25);
    CHECK_FALSE(s.rollout->paused);
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(25));

    auto aborted = daemon.requestRollout(agent::RolloutCommand::Abort, "bad build");
    s = f.step(daemon);
    REQUIRE(aborted.get().ok);
    CHECK(s.rollout->percent == 0);
    CHECK(s.rollout->phase == agent::RolloutPhase::Aborted);
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(0));
    CHECK(readFile(f.dir / "notify.env") == "ROLLED_BACK=1\n");

    auto refused = daemon.requestRollout(agent::RolloutCommand::Promote, "");
    f.step(daemon);
    CHECK_FALSE(refused.get().ok);

    auto resumed = daemon.requestRollout(agent::RolloutCommand::Resume, "fixed");
    s = f.step(daemon);
    CHECK(resumed.get().ok);
    CHECK(s.rollout->phase == agent::RolloutPhase::Holding);

    // A stopped daemon answers at once.
    daemon.stop();
    auto late = daemon.requestRollout(agent::RolloutCommand::Pause, "");
    REQUIRE(late.wait_for(0s) == std::future_status::ready);
    CHECK_FALSE(late.get().ok);
}

TEST_CASE("daemon rollout: dry run moves the percentage but runs no hook", "[daemon][rollout]") {
    Fixture f;
    f.config.agent.dry_run = true;
    agent::Daemon daemon(f.config, f.clock);
    auto s = f.step(daemon);
    CHECK(s.rollout->percent == 5);
    daemon.waitForHooks();
    CHECK(f.percentFile() == envWith(0));
    CHECK(s.hooks[0].ok + s.hooks[0].failed == 0);
}

TEST_CASE("daemon rollout: a reload hands the rollout to the new daemon", "[daemon][rollout][reload]") {
    Fixture f;
    auto old_daemon = std::make_unique<agent::Daemon>(f.config, f.clock);
    agent::StatusSnapshot s;
    for (int i = 0; i < 4; ++i) {
        s = f.step(*old_daemon);
    }
    REQUIRE(s.rollout->percent == 5);
    REQUIRE(s.rollout->held == 3s);
    auto handoff = old_daemon->stopForReload();
    REQUIRE(handoff.rollout_state.has_value());
    old_daemon.reset();
    agent::Daemon next(f.config, f.clock, std::move(handoff));
    CHECK(next.snapshot().rollout->percent == 5);
    CHECK(next.snapshot().rollout->held == 3s);
}

TEST_CASE("daemon rollout: without [rollout] there is no rollout status and commands are refused",
          "[daemon][rollout]") {
    Fixture f;
    f.config.rollout.reset();
    agent::Daemon daemon(f.config, f.clock);
    f.step(daemon);
    CHECK_FALSE(daemon.snapshot().rollout.has_value());
    auto r = daemon.requestRollout(agent::RolloutCommand::Promote, "");
    REQUIRE(r.wait_for(0s) == std::future_status::ready);
    CHECK_FALSE(r.get().ok);
    CHECK(exporters::renderMetrics(daemon.snapshot()).find("rollguard_rollout_") == std::string::npos);
    CHECK(exporters::renderStatusJson(daemon.snapshot()).find("\"rollout\":null") != std::string::npos);
}

TEST_CASE("rollout rendering: the status shows the last 20 history entries, GET /api/v1/rollout all of them",
          "[exporters][rollout]") {
    agent::StatusSnapshot s;
    agent::StatusSnapshot::Rollout r;
    r.stages = {5, 25, 100};
    r.stage = 1;
    r.percent = 25;
    r.held = std::chrono::milliseconds{61'700};
    r.hold = 10min;
    r.paused = true;
    r.gate = {"errors", "p99"};
    for (int i = 0; i < 30; ++i) {
        r.history.push_back({rules::TimePoint{} + std::chrono::seconds{i}, "pause", 25, 25, "entry " + std::to_string(i)});
    }
    s.rollout = r;
    const auto count = [](const std::string& text, const std::string& what) {
        std::size_t n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
            ++n;
        }
        return n;
    };
    const std::string status = exporters::renderStatusJson(s);
    CHECK(count(status, "\"action\":\"pause\"") == 20);
    CHECK(status.find("\"reason\":\"entry 9\"") == std::string::npos);
    CHECK(status.find("\"reason\":\"entry 10\"") != std::string::npos);
    CHECK(count(exporters::renderRolloutJson(r, SIZE_MAX), "\"action\":\"pause\"") == 30);

    const std::string text = exporters::renderRolloutText(r, rules::TimePoint{}, 10);
    INFO(text);
    CHECK(text.find("rollout: 25% (stage 2 of 3), holding, PAUSED\n") == 0);
    CHECK(text.find("  held:      1m1s of 10m (8m59s left, paused)\n") != std::string::npos);
    CHECK(text.find("  gate:      errors, p99\n") != std::string::npos);
    CHECK(text.find("history (last 10):") != std::string::npos);
    CHECK(count(text, "entry ") == 10);
}
