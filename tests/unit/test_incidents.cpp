// Incident records (issue #6): the JSON record, the bounded history, the raw log tail,
// and the daemon's use of them — a record per rollback, resume after a restart between
// hooks, rearm, and rollbacks by hand. ManualClock throughout; no sleeps.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <sstream>
#include <string>
#include <vector>

#include "rollguard/agent/admin.h"
#include "rollguard/agent/config.h"
#include "rollguard/agent/daemon.h"
#include "rollguard/agent/incidents.h"
#include "rollguard/rules/clock.h"
#include "temp_dir.h"

using namespace rollguard;
using namespace std::chrono_literals;
using agent::HookStepStatus;
using agent::IncidentLog;
using agent::IncidentRecord;
using rollguard::testing::appendFile;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;
namespace fs = std::filesystem;

namespace {

rules::TimePoint at(std::int64_t unix_ms) {
    return rules::TimePoint{std::chrono::milliseconds{unix_ms}};
}

IncidentRecord sampleRecord(const std::string& id, std::int64_t opened_ms, bool complete) {
    IncidentRecord r;
    r.id = id;
    r.kind = "rule";
    r.reason = "error_ratio 0.2 > 0.1 over 10s";
    r.opened = at(opened_ms);
    r.complete = complete;
    r.event.rule = "router-errors";
    r.event.severity = "critical";
    r.event.state = "firing";
    r.event.source = "app";
    r.event.metric = "error_ratio";
    r.event.value = 0.2;
    r.event.threshold = 0.1;
    r.event.comparison = "above";
    r.event.samples = 1000;
    r.event.window = 10s;
    r.event.for_ = 2s;
    r.event.since = at(opened_ms - 2000);
    r.event.fired_at = at(opened_ms);
    r.event.host = "web-1";
    r.event.summary = "error_ratio 20% > 10%";
    r.event.group = "route=/a";
    r.event.labels = {{"route", "/a"}};
    r.event.incident_id = id;
    r.stats.events = 1000;
    r.stats.errors = 200;
    r.stats.error_ratio = 0.2;
    r.stats.rate_per_second = 100.0;
    r.stats.p99 = 0.25;
    r.log_lines = {R"({"status":500,"msg":"a \"quoted\" line"})", "second"};
    r.addHooks({"env", "restart", "notify"});
    r.hooks[0].status = HookStepStatus::Ok;
    r.hooks[0].message = "set A=0 in /x.env";
    r.hooks[0].duration = 12ms;
    r.hooks[0].attempts = 1;
    r.hooks[0].runs = 1;
    r.hooks[0].started = at(opened_ms + 1);
    r.hooks[0].finished = at(opened_ms + 13);
    r.hooks[1].status = HookStepStatus::Running;
    r.hooks[1].runs = 1;
    r.hooks[1].started = at(opened_ms + 14);
    return r;
}

}  // namespace

TEST_CASE("incident records round-trip through their JSON exactly", "[incidents]") {
    IncidentRecord r = sampleRecord("0123456789abcdef", 1'700'000'000'123, false);
    r.event.value = std::nan("");  // a manual rollback has no value
    std::string error;
    const auto back = agent::incidentFromJson(agent::incidentToJson(r), error);
    INFO(error);
    REQUIRE(back);
    CHECK(back->id == r.id);
    CHECK(back->kind == "rule");
    CHECK(back->reason == r.reason);
    CHECK(back->opened == r.opened);
    CHECK_FALSE(back->complete);
    CHECK(back->event.rule == "router-errors");
    CHECK(std::isnan(back->event.value));
    CHECK(back->event.threshold == 0.1);
    CHECK(back->event.window == 10s);
    CHECK(back->event.for_ == 2s);
    CHECK(back->event.since == r.event.since);
    CHECK(back->event.fired_at == r.event.fired_at);
    CHECK(back->event.labels == r.event.labels);
    CHECK(back->event.group == "route=/a");
    CHECK(back->event.incident_id == r.id);
    CHECK(back->stats.events == 1000);
    CHECK(back->stats.errors == 200);
    CHECK(back->stats.error_ratio == 0.2);
    CHECK(back->stats.p99 == 0.25);
    CHECK_FALSE(back->stats.p50);
    CHECK(back->log_lines == r.log_lines);
    REQUIRE(back->hooks.size() == 3);
    CHECK(back->hooks[0].status == HookStepStatus::Ok);
    CHECK(back->hooks[0].message == "set A=0 in /x.env");
    CHECK(back->hooks[0].duration == 12ms);
    CHECK(back->hooks[0].finished == r.hooks[0].finished);
    CHECK(back->hooks[1].status == HookStepStatus::Running);
    CHECK_FALSE(back->hooks[1].finished);
    CHECK(back->hooks[2].status == HookStepStatus::Pending);
    CHECK(back->remainingHooks() == std::vector<std::string>{"restart", "notify"});
    const auto steps = back->finishedSteps();
    REQUIRE(steps.size() == 1);
    CHECK(steps[0].hook == "env");
    CHECK(steps[0].status == "ok");

    CHECK_FALSE(agent::incidentFromJson("{\"format\":2,\"id\":\"x\"}", error));
    CHECK_FALSE(agent::incidentFromJson("not json", error));
    CHECK_FALSE(agent::incidentFromJson(R"({"format":1,"id":"x","hooks":[{"hook":"a","status":"bogus"}]})", error));
    CHECK(error == "incident record with a malformed hook entry");
}

TEST_CASE("the incident history is bounded and never drops an unfinished record", "[incidents]") {
    TempDir dir;
    IncidentLog log(dir.path().string(), 3);
    REQUIRE_FALSE(log.save(sampleRecord("aaaa000000000001", 1000, false)));  // unfinished, oldest
    for (int i = 2; i <= 6; ++i) {
        REQUIRE_FALSE(log.save(sampleRecord("aaaa00000000000" + std::to_string(i), 1000 * i, true)));
    }
    const auto records = log.list();
    std::vector<std::string> ids;
    for (const auto& r : records) {
        ids.push_back(r.id);
    }
    CHECK(ids == std::vector<std::string>{"aaaa000000000001", "aaaa000000000004", "aaaa000000000005",
                                          "aaaa000000000006"});
    CHECK((fs::status(dir / "incidents").permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK((fs::status(dir / "incidents" / "aaaa000000000006.json").permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
    // By id or unique prefix; an ambiguous prefix finds nothing.
    CHECK(log.find("aaaa000000000005")->id == "aaaa000000000005");
    CHECK_FALSE(log.find("aaaa0000"));
    // A corrupt file is reported and skipped, never fatal.
    writeFile(dir / "incidents" / "zzzz.json", "{ truncated");
    std::vector<std::string> problems;
    CHECK(log.list(&problems).size() == 4);
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].find("zzzz.json") != std::string::npos);
}

TEST_CASE("tailLines gives the last complete lines before a read position", "[incidents]") {
    TempDir dir;
    const auto path = (dir / "app.log").string();
    writeFile(dir / "app.log", "one\ntwo\r\nthree\nfour\npartial");
    CHECK(agent::tailLines(path, std::nullopt, 2) == std::vector<std::string>{"three", "four"});
    CHECK(agent::tailLines(path, std::nullopt, 10) == std::vector<std::string>{"one", "two", "three", "four"});
    // Up to byte 9 ("one\ntwo\r\n"): what the reader had consumed.
    CHECK(agent::tailLines(path, 9, 10) == std::vector<std::string>{"one", "two"});
    CHECK(agent::tailLines(path, 5, 10) == std::vector<std::string>{"one"});
    CHECK(agent::tailLines(path, 0, 10).empty());
    CHECK(agent::tailLines(path, std::nullopt, 0).empty());
    CHECK(agent::tailLines((dir / "missing.log").string(), std::nullopt, 3).empty());
    // Long lines are cut; only the last MiB is read, and its cut first line is left out.
    std::string big;
    for (int i = 0; i < 3000; ++i) {
        big += std::string(500, 'x') + std::to_string(i) + "\n";
    }
    writeFile(dir / "big.log", big);
    const auto lines = agent::tailLines((dir / "big.log").string(), std::nullopt, 5000, 100);
    CHECK(lines.size() < 3000);
    CHECK(lines.size() > 2000);
    CHECK(lines.back() == std::string(100, 'x') + "\xE2\x80\xA6");
}

namespace {

/// A critical rule over the "app" source and three script hooks that append their
/// name (and what they saw) to hooks.txt.
std::string daemonConfig(const TempDir& dir, const std::string& extra_agent = "") {
    const std::string d = dir.path().string();
    std::string text = R"toml(
[agent]
tick = "1s"
listen = ""
hostname = "unit"
state_dir = ")toml" + d + R"toml(/state"
incident_log_lines = 3
)toml" + extra_agent + R"toml(
[[source]]
name = "app"
type = "json_log"
paths = [")toml" + d + R"toml(/app.log"]
read_from = "beginning"
latency = { field = "duration_ms", unit = "ms" }
error = { field = "status", gte = 500 }

[[rule]]
name = "errors"
source = "app"
severity = "critical"
metric = "error_ratio"
above = 0.1
window = "5s"
hooks = ["first", "second", "third"]
)toml";
    for (const char* name : {"first", "second", "third"}) {
        text += std::string(R"toml(
[[hook]]
name = ")toml") + name + R"toml("
type = "script"
command = ["/bin/sh", "-c", 'printf "%s %s steps=%s reason=%s\n" "$0" "$ROLLGUARD_INCIDENT_ID" "$ROLLGUARD_STEPS" "$ROLLGUARD_REASON" >> "$OUT"', ")toml" +
                name + R"toml("]
env = { OUT = ")toml" + d + R"toml(/hooks.txt" }
)toml";
    }
    return text;
}

agent::Config load(const TempDir& dir, const std::string& text) {
    const agent::LoadResult r = agent::parseConfig(text, (dir / "rollguard.toml").string());
    std::string diags;
    for (const auto& d : r.diagnostics) {
        diags += d.format() + "\n";
    }
    INFO(diags);
    REQUIRE(r.ok());
    return *r.config;
}

std::string lines(int n, int status) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += "{\"status\":" + std::to_string(status) + ",\"duration_ms\":" + std::to_string(10 + i) + "}\n";
    }
    return out;
}

std::vector<std::string> hookRuns(const TempDir& dir) {
    std::vector<std::string> out;
    if (!fs::exists(dir / "hooks.txt")) {
        return out;
    }
    std::istringstream in(readFile(dir / "hooks.txt"));
    for (std::string l; std::getline(in, l);) {
        out.push_back(l.substr(0, l.find(' ')));
    }
    return out;
}

void step(agent::Daemon& daemon, rules::ManualClock& clock, const TempDir& dir, const std::string& text) {
    appendFile(dir / "app.log", text);
    clock.advance(1s);
    daemon.pollSources();
    daemon.tick();
}

}  // namespace

TEST_CASE("a rollback writes an incident record with the window and the last log lines", "[incidents][daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    rules::ManualClock clock;
    IncidentRecord record;
    {
        agent::Daemon daemon(load(dir, daemonConfig(dir)), clock);
        step(daemon, clock, dir, lines(20, 200));
        step(daemon, clock, dir, lines(10, 503));  // 10 of 30 fail
        daemon.waitForHooks();
        const auto s = daemon.snapshot();
        CHECK(s.incidents == 1);
        CHECK(s.incidents_open == 0);
        const auto records = IncidentLog((dir / "state").string(), 100).list();
        REQUIRE(records.size() == 1);
        record = records[0];
    }
    CHECK(record.kind == "rule");
    CHECK(record.complete);
    CHECK(record.event.rule == "errors");
    CHECK(record.stats.events == 30);
    CHECK(record.stats.errors == 10);
    CHECK(*record.stats.error_ratio == Approx(1.0 / 3.0));
    REQUIRE(record.stats.max);
    CHECK(*record.stats.max == Approx(0.029).epsilon(0.01));
    REQUIRE(record.log_lines.size() == 3);
    CHECK(record.log_lines[2] == R"({"status":503,"duration_ms":19})");
    REQUIRE(record.hooks.size() == 3);
    for (const auto& h : record.hooks) {
        CHECK(h.status == HookStepStatus::Ok);
        CHECK(h.runs == 1);
        CHECK(h.finished);
    }
    CHECK(hookRuns(dir) == std::vector<std::string>{"first", "second", "third"});
    // The last step saw the two before it, and every step the incident's id.
    const std::string runs = readFile(dir / "hooks.txt");
    CHECK(runs.find("third " + record.id + R"( steps=[{"hook":"first","status":"ok")") != std::string::npos);
}

TEST_CASE("a restart between hooks resumes the rollback without re-running finished hooks",
          "[incidents][daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    // What a daemon killed while "second" ran leaves behind: first done, second
    // running, third pending.
    IncidentRecord left = sampleRecord("feedfacecafebeef", 1'700'000'000'000, false);
    left.event.rule = "errors";
    left.hooks.clear();
    left.addHooks({"first", "second", "third"});
    left.hooks[0].status = HookStepStatus::Ok;
    left.hooks[0].message = "exit status 0";
    left.hooks[0].runs = 1;
    left.hooks[1].status = HookStepStatus::Running;
    left.hooks[1].runs = 1;
    REQUIRE_FALSE(IncidentLog((dir / "state").string(), 100).save(left));

    rules::ManualClock clock;
    {
        agent::Daemon daemon(load(dir, daemonConfig(dir)), clock);
        daemon.waitForHooks();
        CHECK(daemon.snapshot().incidents_open == 0);
    }
    CHECK(hookRuns(dir) == std::vector<std::string>{"second", "third"});
    const auto back = IncidentLog((dir / "state").string(), 100).find("feedfacecafebeef");
    REQUIRE(back);
    CHECK(back->complete);
    CHECK(back->hooks[0].runs == 1);
    CHECK(back->hooks[1].runs == 2);  // interrupted once, run again
    CHECK(back->hooks[2].runs == 1);
    const std::string runs = readFile(dir / "hooks.txt");
    CHECK(runs.find(R"(third feedfacecafebeef steps=[{"hook":"first","status":"ok","message":"exit status 0"},)"
                    R"({"hook":"second","status":"ok")") != std::string::npos);

    // A second start finds nothing left to do.
    {
        agent::Daemon daemon(load(dir, daemonConfig(dir)), clock);
        daemon.waitForHooks();
    }
    CHECK(hookRuns(dir).size() == 2);
}

TEST_CASE("a latched rule rolls back again only after rearm", "[incidents][daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    rules::ManualClock clock;
    agent::Daemon daemon(load(dir, daemonConfig(dir)), clock);
    const auto bad = [&] { step(daemon, clock, dir, lines(10, 503)); };
    const auto good = [&] {
        for (int i = 0; i < 6; ++i) {  // the 5 s window forgets the errors
            step(daemon, clock, dir, lines(10, 200));
        }
    };
    bad();
    daemon.waitForHooks();
    CHECK(hookRuns(dir).size() == 3);
    good();
    bad();  // a new breach of the same latched rule: no second rollback
    daemon.waitForHooks();
    CHECK(hookRuns(dir).size() == 3);
    CHECK(daemon.snapshot().rules[0].latched);

    good();
    auto rearmed = daemon.requestRearm();
    CHECK(rearmed.wait_for(0s) == std::future_status::timeout);  // applied by the next tick
    step(daemon, clock, dir, lines(10, 200));
    CHECK(rearmed.wait_for(0s) == std::future_status::ready);
    CHECK_FALSE(daemon.snapshot().rules[0].latched);
    CHECK(daemon.snapshot().rearms == 1);
    bad();
    daemon.waitForHooks();
    CHECK(hookRuns(dir).size() == 6);
    CHECK(IncidentLog((dir / "state").string(), 100).list().size() == 2);
}

TEST_CASE("a rollback by hand runs the critical rules' hooks as a manual incident", "[incidents][daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    rules::ManualClock clock;
    clock.set(at(1'700'000'000'000));
    agent::Daemon daemon(load(dir, daemonConfig(dir)), clock);
    std::string error;
    const auto id = daemon.rollback("canary 42 is bad", "", error);
    INFO(error);
    REQUIRE(id);
    CHECK(*id == "manual-1700000000000");
    daemon.waitForHooks();
    CHECK(hookRuns(dir) == std::vector<std::string>{"first", "second", "third"});
    CHECK(readFile(dir / "hooks.txt").find("reason=canary 42 is bad") != std::string::npos);
    const auto record = IncidentLog((dir / "state").string(), 100).find(*id);
    REQUIRE(record);
    CHECK(record->kind == "manual");
    CHECK(record->reason == "canary 42 is bad");
    CHECK(record->complete);
    CHECK(daemon.snapshot().manual_rollbacks == 1);

    CHECK_FALSE(daemon.rollback("x", "no-such-rule", error));
    CHECK(error == "no rule named 'no-such-rule'");
}

TEST_CASE("in dry-run mode neither rules nor hands open incidents", "[incidents][daemon]") {
    TempDir dir;
    writeFile(dir / "app.log", "");
    rules::ManualClock clock;
    agent::Daemon daemon(load(dir, daemonConfig(dir, "dry_run = true\n")), clock);
    step(daemon, clock, dir, lines(10, 503));
    daemon.waitForHooks();
    std::string error;
    CHECK_FALSE(daemon.rollback("x", "", error));
    CHECK(error.rfind("the agent runs in dry-run mode", 0) == 0);
    CHECK(hookRuns(dir).empty());
    CHECK(IncidentLog((dir / "state").string(), 100).list().empty());
}

TEST_CASE("the admin token is refused when others may read it or it is under 32 bytes", "[incidents][admin]") {
    TempDir dir;
    const auto file = (dir / "admin.token").string();
    const std::string good(40, 'k');
    std::string error;
    writeFile(file, "  " + good + "\n");
    ::chmod(file.c_str(), 0600);
    CHECK(agent::readAdminToken(file, error) == good);

    ::chmod(file.c_str(), 0640);
    CHECK_FALSE(agent::readAdminToken(file, error));
    CHECK(error.find("accessible by group or others (mode 640): chmod 600 " + file) != std::string::npos);
    ::chmod(file.c_str(), 0602);  // writable by others: they could put their own token there
    CHECK_FALSE(agent::readAdminToken(file, error));

    writeFile(file, std::string(31, 'k') + "\n");
    ::chmod(file.c_str(), 0600);
    CHECK_FALSE(agent::readAdminToken(file, error));
    CHECK(error == "admin token file " + file + " holds 31 bytes; the admin token must be at least 32 (for example: "
                   "openssl rand -hex 32 > " + file + ")");
    writeFile(file, std::string(32, 'k'));
    CHECK(agent::readAdminToken(file, error) == std::string(32, 'k'));
    writeFile(file, "\n");
    CHECK_FALSE(agent::readAdminToken(file, error));
    CHECK(error.find("is empty") != std::string::npos);
    CHECK_FALSE(agent::readAdminToken((dir / "missing").string(), error));
    CHECK(error.find("cannot read admin token file") != std::string::npos);

    agent::AdminToken token;
    CHECK_FALSE(token.enabled());
    CHECK_FALSE(token.matches("Bearer "));
    token.set(good);
    CHECK(token.enabled());
    CHECK(token.matches("Bearer " + good));
    CHECK_FALSE(token.matches("Bearer " + good.substr(1)));
    token.set("");
    CHECK_FALSE(token.matches("Bearer " + good));
}

TEST_CASE("admin requests, tokens and offline rearm", "[incidents][admin]") {
    std::string error;
    CHECK(agent::parseAdminRequest("", error)->reason.empty());
    const auto r = agent::parseAdminRequest(R"({"reason":"bad \"canary\"","rule":"errors"})", error);
    REQUIRE(r);
    CHECK(r->reason == "bad \"canary\"");
    CHECK(r->rule == "errors");
    CHECK_FALSE(agent::parseAdminRequest("[1]", error));
    CHECK_FALSE(agent::parseAdminRequest(R"({"reason":"x","force":true})", error));
    CHECK(error == "unknown field 'force' (allowed: reason, rule)");

    CHECK(agent::bearerMatches("Bearer abc", "abc"));
    CHECK_FALSE(agent::bearerMatches("Bearer abd", "abc"));
    CHECK_FALSE(agent::bearerMatches("Bearer abc ", "abc"));
    CHECK_FALSE(agent::bearerMatches("Basic abc", "abc"));
    CHECK_FALSE(agent::bearerMatches("Bearer ", ""));

    // A latched rule on disk, cleared without a daemon.
    TempDir dir;
    writeFile(dir / "app.log", "");
    rules::ManualClock clock;
    const auto config = load(dir, daemonConfig(dir));
    {
        agent::Daemon daemon(config, clock);
        step(daemon, clock, dir, lines(10, 503));
        daemon.waitForHooks();
        REQUIRE(daemon.snapshot().rules[0].latched);
    }
    std::string message;
    REQUIRE(agent::rearmOffline(config, message));
    CHECK(message == "cleared 1 latch(es) in " + (dir / "state" / "rules.state").string());
    agent::Daemon daemon(config, clock);
    CHECK_FALSE(daemon.snapshot().rules[0].latched);
}
