// The [rollout] section: parsed values, errors with line:col, warnings, and the
// {{rollout_percent}} check of rule hooks; scaleTimings over a whole config.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "rollguard/agent/config.h"

using namespace std::chrono_literals;
using rollguard::agent::Config;
using rollguard::agent::Diagnostic;
using rollguard::agent::LoadResult;
using rollguard::agent::parseConfig;
using rollguard::agent::RolloutConfig;
using rollguard::agent::scaleTimings;

namespace {

using Strings = std::vector<std::string>;
const std::string kPath = "/etc/rollguard/rollguard.toml";

/// Lines 1-4 a source, 5-9 an env_file hook "percent" writing {{rollout_percent}},
/// 10-13 a webhook "page", 14-19 critical rule "errors", 20-26 warning rule "slow",
/// `rule_hooks` the hooks of rule "errors"; line 27 `[rollout]`, then `lines` from
/// line 28 (kFirstLine).
std::string withRollout(const std::string& lines, const std::string& rule_hooks = "[\"page\"]") {
    return "[[source]]\n"                                           // 1
           "name = \"app\"\n"                                       // 2
           "type = \"json_log\"\n"                                  // 3
           "paths = [\"app.jsonl\"]\n"                              // 4
           "[[hook]]\n"                                             // 5
           "name = \"percent\"\n"                                   // 6
           "type = \"env_file\"\n"                                  // 7
           "path = \"rollout.env\"\n"                               // 8
           "set = { ROLLOUT_PERCENT = \"{{rollout_percent}}\" }\n"  // 9
           "[[hook]]\n"                                             // 10
           "name = \"page\"\n"                                      // 11
           "type = \"webhook\"\n"                                   // 12
           "url = \"http://127.0.0.1:9/\"\n"                        // 13
           "[[rule]]\n"                                             // 14
           "name = \"errors\"\n"                                    // 15
           "source = \"app\"\n"                                     // 16
           "metric = \"error_ratio\"\n"                             // 17
           "above = 0.05\n"                                         // 18
           "hooks = " +
           rule_hooks +
           "\n"                     // 19
           "[[rule]]\n"             // 20
           "name = \"slow\"\n"      // 21
           "severity = \"warning\"\n"  // 22
           "source = \"app\"\n"     // 23
           "metric = \"error_ratio\"\n"  // 24
           "above = 0.02\n"         // 25
           "hooks = [\"page\"]\n"   // 26
           "[rollout]\n" +          // 27
           lines;
}
constexpr int kFirstLine = 28;

std::string at(int offset, int column) {
    return std::to_string(kFirstLine + offset) + ":" + std::to_string(column) + ": ";
}

Strings diagnostics(const std::string& text, Diagnostic::Level level) {
    const LoadResult r = parseConfig(text, kPath);
    Strings out;
    for (const auto& d : r.diagnostics) {
        if (d.level == level) {
            out.push_back(std::to_string(d.where.line) + ":" + std::to_string(d.where.column) + ": " + d.message);
        }
    }
    return out;
}

Strings errorsOf(const std::string& text) {
    return diagnostics(text, Diagnostic::Level::Error);
}

Strings warningsOf(const std::string& text) {
    return diagnostics(text, Diagnostic::Level::Warning);
}

/// The single error of `text`, for one-mistake cases.
std::string oneError(const std::string& text) {
    const auto errors = errorsOf(text);
    INFO(text);
    REQUIRE(errors.size() == 1);
    return errors[0];
}

bool mentions(const Strings& messages, const std::string& text) {
    for (const auto& m : messages) {
        if (m.find(text) != std::string::npos) {
            return true;
        }
    }
    return false;
}

}  // namespace

TEST_CASE("rollout config: defaults", "[rollout][config]") {
    const std::string text = withRollout("stages = [5, 25, 50, 100]\nhooks = [\"percent\"]\n");
    const LoadResult r = parseConfig(text, kPath);
    REQUIRE(r.ok());
    REQUIRE(r.config->rollout);
    const RolloutConfig& c = *r.config->rollout;
    CHECK(c.stages == std::vector<int>{5, 25, 50, 100});
    CHECK(c.hold == std::vector<std::chrono::nanoseconds>(4, 10min));
    CHECK(c.gate.empty());
    CHECK(c.manual_gate.empty());
    CHECK(c.on_critical == RolloutConfig::OnCritical::Zero);
    CHECK(c.cooldown == 10min);
    CHECK(c.max_rollbacks == 3);
    CHECK(c.hooks == Strings{"percent"});
    CHECK(c.rollback_hooks.empty());
    CHECK(c.location.line == 27);
    CHECK(c.location.column == 1);
    // "percent" is used by [rollout] only: no "not used by any rule" warning.
    CHECK(warningsOf(text).empty());
}

TEST_CASE("rollout config: no [rollout] section", "[rollout][config]") {
    const LoadResult r = parseConfig(withRollout("").substr(0, withRollout("").find("[rollout]")), kPath);
    REQUIRE(r.ok());
    CHECK_FALSE(r.config->rollout);
}

TEST_CASE("rollout config: every key", "[rollout][config]") {
    const LoadResult r = parseConfig(withRollout("stages = [10, 50, 100]\n"
                                                 "hold = [\"5m\", \"30m\", \"1h\"]\n"
                                                 "gate = [\"errors\"]\n"
                                                 "manual_gate = [100]\n"
                                                 "on_critical = \"previous\"\n"
                                                 "cooldown = \"0s\"\n"
                                                 "max_rollbacks = 0\n"
                                                 "hooks = [\"percent\"]\n"
                                                 "rollback_hooks = [\"page\"]\n"),
                                     kPath);
    REQUIRE(r.ok());
    const RolloutConfig& c = *r.config->rollout;
    CHECK(c.stages == std::vector<int>{10, 50, 100});
    CHECK(c.hold == std::vector<std::chrono::nanoseconds>{5min, 30min, 1h});
    CHECK(c.gate == Strings{"errors"});
    CHECK(c.manual_gate == std::vector<int>{100});
    CHECK(c.on_critical == RolloutConfig::OnCritical::Previous);
    CHECK(c.cooldown == 0ns);
    CHECK(c.max_rollbacks == 0);
    CHECK(c.rollback_hooks == Strings{"page"});
}

TEST_CASE("rollout config: one hold for every stage and manual_gate true", "[rollout][config]") {
    const LoadResult r = parseConfig(withRollout("stages = [5, 25, 100]\nhold = \"2m\"\nmanual_gate = true\n"
                                                 "hooks = [\"percent\"]\n"),
                                     kPath);
    REQUIRE(r.ok());
    CHECK(r.config->rollout->hold == std::vector<std::chrono::nanoseconds>(3, 2min));
    CHECK(r.config->rollout->manual_gate == std::vector<int>{25, 100});

    const LoadResult off = parseConfig(withRollout("stages = [5, 100]\nmanual_gate = false\nhooks = [\"percent\"]\n"),
                                       kPath);
    REQUIRE(off.ok());
    CHECK(off.config->rollout->manual_gate.empty());
}

TEST_CASE("rollout config: stages errors point at the element", "[rollout][config]") {
    const std::string h = "hooks = [\"percent\"]\n";
    CHECK(oneError(withRollout("stages = [5, 0, 50]\n" + h)) ==
          at(0, 14) + "stage percentages must be between 1 and 100, got 0");
    CHECK(oneError(withRollout("stages = [5, 101]\n" + h)) ==
          at(0, 14) + "stage percentages must be between 1 and 100, got 101");
    CHECK(oneError(withRollout("stages = [5, 25, 25]\n" + h)) ==
          at(0, 18) + "'stages' must be strictly increasing: 25 after 25");
    CHECK(oneError(withRollout("stages = [50, 25]\n" + h)) ==
          at(0, 15) + "'stages' must be strictly increasing: 25 after 50");
    CHECK(oneError(withRollout("stages = [5, \"25\"]\n" + h)) ==
          at(0, 14) + "elements of 'stages' must be integer percentages (1 to 100), got string");
    CHECK(oneError(withRollout("stages = []\n" + h)) ==
          at(0, 10) + "'stages' must list at least one percentage, e.g. [5, 25, 50, 100]");
    CHECK(oneError(withRollout("stages = 5\n" + h)).rfind(at(0, 10) + "'stages' must be an array", 0) == 0);
    CHECK(oneError(withRollout(h)) == "27:1: missing required key 'stages' in [rollout]");
}

TEST_CASE("rollout config: hold errors", "[rollout][config]") {
    const std::string s = "stages = [5, 25, 100]\nhooks = [\"percent\"]\n";
    CHECK(oneError(withRollout(s + "hold = [\"1m\", \"2m\"]\n")) ==
          at(2, 8) + "'hold' lists 2 durations for 3 stages: write one per stage, or a single duration for all");
    CHECK(oneError(withRollout(s + "hold = [\"1m\", \"soon\", \"3m\"]\n")).rfind(at(2, 15) + "'hold' is not a valid duration", 0) == 0);
    CHECK(oneError(withRollout(s + "hold = 10\n")).rfind(at(2, 8) + "'hold' must be a duration string", 0) == 0);
}

TEST_CASE("rollout config: gate errors and suggestions", "[rollout][config]") {
    const std::string s = "stages = [5, 100]\nhooks = [\"percent\"]\n";
    CHECK(oneError(withRollout(s + "gate = [\"errors\", \"slwo\"]\n")) ==
          at(2, 19) + "unknown rule 'slwo' in 'gate' (did you mean 'slow'?)");
    CHECK(oneError(withRollout(s + "gate = [\"latency\"]\n")) ==
          at(2, 9) + "unknown rule 'latency' in 'gate' (defined rules: errors, slow)");
    CHECK(oneError(withRollout(s + "gate = [\"errors\", \"errors\"]\n")) ==
          at(2, 19) + "rule 'errors' is listed twice in 'gate'");
    CHECK(oneError(withRollout(s + "gate = []\n")) ==
          at(2, 8) + "'gate' must name at least one rule (leave it out to gate on every rule)");
}

TEST_CASE("rollout config: manual_gate, on_critical, cooldown and max_rollbacks errors", "[rollout][config]") {
    const std::string s = "stages = [5, 25, 100]\nhooks = [\"percent\"]\n";
    CHECK(oneError(withRollout(s + "manual_gate = [25, 50]\n")) ==
          at(2, 20) + "'manual_gate' lists 50, which is not one of the stages (5, 25, 100)");
    CHECK(oneError(withRollout(s + "manual_gate = [25, 25]\n")) ==
          at(2, 20) + "stage 25 is listed twice in 'manual_gate'");
    CHECK(oneError(withRollout(s + "manual_gate = \"yes\"\n")).rfind(at(2, 15) + "'manual_gate' must be a boolean or", 0) == 0);
    CHECK(oneError(withRollout(s + "on_critical = \"half\"\n")) ==
          at(2, 15) + "'on_critical' must be one of zero, previous; got \"half\"");
    CHECK(oneError(withRollout(s + "on_critical = \"prev\"\n")).find("(did you mean 'previous'?)") != std::string::npos);
    CHECK(oneError(withRollout(s + "cooldown = \"-1m\"\n")).rfind(at(2, 12) + "'cooldown' is not a valid duration", 0) == 0);
    CHECK(oneError(withRollout(s + "max_rollbacks = -1\n")) ==
          at(2, 17) + "'max_rollbacks' must be 0 (no limit) or more, got -1");
}

TEST_CASE("rollout config: hooks errors", "[rollout][config]") {
    const std::string s = "stages = [5, 100]\n";
    CHECK(oneError(withRollout(s + "hooks = [\"percnt\"]\n")) ==
          at(1, 10) + "unknown hook 'percnt' (did you mean 'percent'?)");
    CHECK(oneError(withRollout(s + "hooks = [\"percent\", \"percent\"]\n")) ==
          at(1, 21) + "hook 'percent' is listed twice in 'hooks'");
    CHECK(oneError(withRollout(s + "hooks = [\"percent\"]\nrollback_hooks = [\"pager\"]\n")) ==
          at(2, 19) + "unknown hook 'pager' (did you mean 'page'?)");
}

TEST_CASE("rollout config: unknown keys get a suggestion and [[rollout]] is refused", "[rollout][config]") {
    CHECK(oneError(withRollout("stages = [5, 100]\nhooks = [\"percent\"]\nstage = 5\n")) ==
          at(2, 1) + "unknown key 'stage' in [rollout] (did you mean 'stages'?)");
    const std::string base = withRollout("");
    const std::string arrays = base.substr(0, base.find("[rollout]")) + "[[rollout]]\nstages = [5]\n";
    CHECK(mentions(errorsOf(arrays), "'rollout' must be a table ([rollout])"));
}

TEST_CASE("rollout config: a rule hook that writes rollout_percent is an error at the rule's hooks", "[rollout][config]") {
    const auto errors = errorsOf(withRollout("stages = [5, 100]\nhooks = [\"percent\"]\n", "[\"page\", \"percent\"]"));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] ==
          "19:18: hook 'percent' writes {{rollout_percent}}, which only [rollout] events set: a rule's event has no "
          "percentage (list the hook in [rollout] hooks instead)");
}

TEST_CASE("rollout config: warnings for a gate without a critical rule and for no hooks", "[rollout][config]") {
    auto warnings = warningsOf(withRollout("stages = [5, 100]\ngate = [\"slow\"]\nhooks = [\"percent\"]\n"));
    CHECK(warnings == Strings{at(1, 8) + "no critical rule in the rollout's gate: nothing rolls this rollout back"});

    warnings = warningsOf(withRollout("stages = [5, 100]\n"));
    CHECK(mentions(warnings, "27:1: [rollout] has no hooks: the percentage reaches nothing: add a hook that writes "
                             "{{rollout_percent}}"));
    warnings = warningsOf(withRollout("stages = [5, 100]\nhooks = []\n"));
    CHECK(mentions(warnings, at(1, 9) + "[rollout] has no hooks"));

    // A last stage below 100 is a deliberate partial rollout: no warning.
    CHECK(warningsOf(withRollout("stages = [5, 50]\nhooks = [\"percent\"]\n")).empty());
}

TEST_CASE("scaleTimings divides rule, source, scrape and rollout timings", "[rollout][config]") {
    const LoadResult r = parseConfig("[[source]]\n"
                                     "name = \"app\"\n"
                                     "type = \"json_log\"\n"
                                     "paths = [\"app.jsonl\"]\n"
                                     "time = \"event\"\n"
                                     "timestamp = \"ts\"\n"
                                     "lateness = \"10s\"\n"
                                     "[[source]]\n"
                                     "name = \"api\"\n"
                                     "type = \"health\"\n"
                                     "url = \"http://127.0.0.1:9/health\"\n"
                                     "interval = \"5s\"\n"
                                     "timeout = \"2s\"\n"
                                     "[[hook]]\n"
                                     "name = \"percent\"\n"
                                     "type = \"env_file\"\n"
                                     "path = \"rollout.env\"\n"
                                     "timeout = \"10s\"\n"
                                     "set = { ROLLOUT_PERCENT = \"{{rollout_percent}}\" }\n"
                                     "[[rule]]\n"
                                     "name = \"errors\"\n"
                                     "source = \"app\"\n"
                                     "metric = \"error_ratio\"\n"
                                     "above = 0.05\n"
                                     "window = \"5m\"\n"
                                     "for = \"1m\"\n"
                                     "keep_firing_for = \"2m\"\n"
                                     "hooks = []\n"
                                     "[rollout]\n"
                                     "stages = [5, 100]\n"
                                     "hold = [\"10m\", \"1h\"]\n"
                                     "cooldown = \"30m\"\n"
                                     "hooks = [\"percent\"]\n",
                                     kPath);
    for (const auto& d : r.diagnostics) {
        INFO(d.where.line << ":" << d.where.column << ": " << d.message);
        CHECK(d.level != Diagnostic::Level::Error);
    }
    REQUIRE(r.ok());
    Config c = *r.config;
    const auto tick = c.agent.tick;
    scaleTimings(c, 60.0);
    const auto& rule = c.rules.at(0);
    CHECK(rule.window == 5s);
    CHECK(rule.for_ == 1s);
    CHECK(rule.keep_firing_for == 2s);
    CHECK(rule.delay == r.config->rules.at(0).delay / 60);
    CHECK(c.sources.at(0).lateness == std::chrono::nanoseconds{10s} / 60);
    // Scrape interval and timeout never go below 100 ms.
    CHECK(c.scrapes.at(0).interval == 100ms);
    CHECK(c.scrapes.at(0).timeout == 100ms);
    CHECK(c.rollout->hold == std::vector<std::chrono::nanoseconds>{10s, 1min});
    CHECK(c.rollout->cooldown == 30s);
    // Not scaled: the tick and hook timeouts.
    CHECK(c.agent.tick == tick);
    CHECK(c.hooks.at(0).timeout == 10s);

    // A factor of 1 (or an invalid one) changes nothing.
    Config same = *r.config;
    scaleTimings(same, 1.0);
    CHECK(same.rules.at(0).window == 5min);
    scaleTimings(same, 0.0);
    scaleTimings(same, -2.0);
    CHECK(same.rules.at(0).window == 5min);
    CHECK(same.rollout->cooldown == 30min);
}
