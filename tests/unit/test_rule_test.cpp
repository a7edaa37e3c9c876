// `rollguard test`: rule unit tests run through the daemon's judgement code.

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "rollguard/agent/config.h"
#include "rollguard/agent/rule_test.h"

using namespace std::chrono_literals;
using rollguard::agent::parseConfig;
using rollguard::agent::RuleTestCase;
using rollguard::agent::RuleTestExpect;
using rollguard::agent::RuleTestFile;
using rollguard::agent::RuleTestInput;
using rollguard::agent::runRuleTests;

namespace {

RuleTestFile fileWith(const std::string& rules) {
    const std::string text =
        "[agent]\nlisten = \"\"\n"
        "[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"/nonexistent/*.log\"]\n"
        "latency = { field = \"ms\", unit = \"ms\" }\nerror = { field = \"status\", gte = 500 }\n"
        "[[hook]]\nname = \"rollback\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n" +
        rules;
    auto loaded = parseConfig(text, "/tmp/rule-test.toml");
    for (const auto& d : loaded.diagnostics) {
        INFO(d.format());
    }
    REQUIRE(loaded.ok());
    RuleTestFile file;
    file.path = "/tmp/rule-test_test.toml";
    file.config = std::move(*loaded.config);
    file.start = rollguard::rules::TimePoint{std::chrono::seconds{1795428000}};
    return file;
}

const std::string kP99Rule =
    "[[rule]]\nname = \"p99\"\nseverity = \"critical\"\nsource = \"app\"\nmetric = \"p99\"\nabove = \"250ms\"\n"
    "window = \"1m\"\nfor = \"2m\"\nhooks = [\"rollback\"]\n";

RuleTestInput steady(std::chrono::nanoseconds from, std::chrono::nanoseconds to, double latency_seconds) {
    RuleTestInput in;
    in.source = "app";
    in.from = from;
    in.to = to;
    in.rate = 10;
    in.latencies = {latency_seconds};
    return in;
}

RuleTestExpect expectAt(std::chrono::nanoseconds at, std::vector<std::string> firing, std::vector<std::string> pending,
                        std::optional<std::vector<std::string>> hooks = std::nullopt) {
    RuleTestExpect e;
    e.at = at;
    e.firing = std::move(firing);
    e.pending = std::move(pending);
    e.hooks = std::move(hooks);
    e.location = {"/tmp/rule-test_test.toml", 7, 3};
    return e;
}

}  // namespace

TEST_CASE("a rule test follows for exactly: pending at the breach, firing for later", "[ruletest]") {
    RuleTestFile file = fileWith(kP99Rule);
    RuleTestCase test;
    test.name = "latency regression";
    test.inputs = {steady(0s, 5min, 0.020), steady(5min, 20min, 0.400)};
    // 5m: the first slow second already puts p99 above 250ms (10 of ~600 samples > 1%).
    test.expects = {expectAt(4min + 59s, {}, {}), expectAt(5min, {}, {}), expectAt(5min + 1s, {}, {"p99"}),
                    expectAt(7min, {}, {"p99"}), expectAt(7min + 1s, {"p99"}, {}, std::vector<std::string>{"rollback"})};
    file.tests.push_back(test);
    const auto outcomes = runRuleTests(file);
    REQUIRE(outcomes.size() == 1);
    for (const auto& f : outcomes[0].failures) {
        INFO(f);
    }
    CHECK(outcomes[0].passed());
}

TEST_CASE("a failing rule test says what was expected, what happened, and why", "[ruletest]") {
    RuleTestFile file = fileWith(kP99Rule);
    RuleTestCase test;
    test.name = "wrong expectation";
    test.inputs = {steady(0s, 10min, 0.020)};
    test.expects = {expectAt(3min, {"p99"}, {}, std::vector<std::string>{"rollback"})};
    file.tests.push_back(test);
    const auto outcomes = runRuleTests(file);
    REQUIRE(outcomes.size() == 1);
    REQUIRE(outcomes[0].failures.size() == 1);
    const std::string& f = outcomes[0].failures[0];
    CHECK(f.find("/tmp/rule-test_test.toml:7:3: at 3m (tick 3m):\n") == 0);
    CHECK(f.find("    firing: expected [p99], got []\n") != std::string::npos);
    CHECK(f.find("    hooks run so far: expected [rollback], got []\n") != std::string::npos);
    CHECK(f.find("      p99: inactive (p99=20ms, above 250ms, 600 samples)\n") != std::string::npos);
}

TEST_CASE("rule test inputs: errors are spread exactly, literal lines go through the parser", "[ruletest]") {
    RuleTestFile file = fileWith(
        "[[rule]]\nname = \"errors\"\nseverity = \"warning\"\nsource = \"app\"\nmetric = \"error_ratio\"\n"
        "above = 0.05\nwindow = \"1m\"\nmin_samples = 10\n");
    RuleTestCase test;
    test.name = "errors";
    RuleTestInput gen = steady(0s, 10min, 0.01);
    gen.error_ratio = 0.05;  // exactly 5%: not above
    RuleTestInput lines;
    lines.source = "app";
    lines.at = 3min;
    // 30 errors in one second: 60 of 630 in the window, above 5%. (assign, not a loop of
    // push_back(literal): g++ 12 -O2 warns -Warray-bounds on the inlined string copy.)
    lines.lines.assign(30, std::string(R"({"status":503,"ms":3})"));
    lines.lines.push_back("not json");
    test.inputs = {gen, lines};
    test.expects = {expectAt(2min + 59s, {}, {}), expectAt(3min, {"errors"}, {}), expectAt(4min + 1s, {}, {})};
    file.tests.push_back(test);
    const auto outcomes = runRuleTests(file);
    REQUIRE(outcomes.size() == 1);
    for (const auto& f : outcomes[0].failures) {
        INFO(f);
    }
    CHECK(outcomes[0].passed());
}

TEST_CASE("rule tests feed labelled inputs to the selections and baselines that match them", "[ruletest]") {
    const std::string text =
        "[agent]\nlisten = \"\"\n"
        "[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"/nonexistent/*.log\"]\n"
        "labels = { variant = \"variant\", route = \"route\" }\n"
        "latency = { field = \"ms\", unit = \"ms\" }\n"
        "[[rule]]\nname = \"canary-p99\"\nsource = \"app\"\nmetric = \"p99\"\nlabels = { variant = \"canary\" }\n"
        "baseline = { labels = { variant = \"stable\" } }\nabove = \"2x\"\nwindow = \"1m\"\nfor = \"30s\"\n"
        "hooks = [\"rollback\"]\n"
        "[[hook]]\nname = \"rollback\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
    auto loaded = parseConfig(text, "/tmp/rule-test-labels.toml");
    for (const auto& d : loaded.diagnostics) {
        INFO(d.format());
    }
    REQUIRE(loaded.ok());
    RuleTestFile file;
    file.config = std::move(*loaded.config);
    file.start = rollguard::rules::TimePoint{std::chrono::seconds{1795428000}};
    RuleTestCase test;
    test.name = "canary twice as slow as stable";
    RuleTestInput stable = steady(0s, 10min, 0.020);
    stable.labels = {{"variant", "stable"}};
    RuleTestInput canary_ok = steady(0s, 3min, 0.025);
    canary_ok.labels = {{"variant", "canary"}, {"route", "/a"}};
    RuleTestInput canary_slow = steady(3min, 10min, 0.060);  // 3x stable
    canary_slow.labels = {{"variant", "canary"}, {"route", "/a"}};
    RuleTestInput unlabelled = steady(0s, 10min, 0.500);  // neither canary nor stable: read by no selection
    test.inputs = {stable, canary_ok, canary_slow, unlabelled};
    // The canary p99 passes 2x stable (40ms) at 3m01s; `for` 30s.
    test.expects = {expectAt(3min, {}, {}), expectAt(3min + 1s, {}, {"canary-p99"}),
                    expectAt(3min + 30s, {}, {"canary-p99"}),
                    expectAt(3min + 31s, {"canary-p99"}, {}, std::vector<std::string>{"rollback"})};
    file.tests.push_back(test);
    const auto outcomes = runRuleTests(file);
    REQUIRE(outcomes.size() == 1);
    for (const auto& f : outcomes[0].failures) {
        INFO(f);
    }
    CHECK(outcomes[0].passed());
}

TEST_CASE("a failing rule test describes a baseline rule's and a comparison's values", "[ruletest][rule_value]") {
    const std::string text =
        "[agent]\nlisten = \"\"\n"
        "[[source]]\nname = \"app\"\ntype = \"json_log\"\npaths = [\"/nonexistent/*.log\"]\n"
        "labels = { variant = \"variant\" }\n"
        "latency = { field = \"ms\", unit = \"ms\" }\n"
        "[[rule]]\nname = \"canary-p99\"\nsource = \"app\"\nmetric = \"p99\"\nlabels = { variant = \"canary\" }\n"
        "baseline = { labels = { variant = \"stable\" } }\nabove = \"2x\"\nwindow = \"1m\"\n"
        "[[rule]]\nname = \"canary-slower\"\nsource = \"app\"\nmetric = \"p50\"\nlabels = { variant = \"canary\" }\n"
        "baseline = { labels = { variant = \"stable\" } }\ncompare = \"mann_whitney\"\nwindow = \"1m\"\n"
        "min_samples = 100\n";
    auto loaded = parseConfig(text, "/tmp/rule-test-values.toml");
    for (const auto& d : loaded.diagnostics) {
        INFO(d.format());
    }
    REQUIRE(loaded.ok());
    RuleTestFile file;
    file.path = "/tmp/rule-test_test.toml";
    file.config = std::move(*loaded.config);
    file.start = rollguard::rules::TimePoint{std::chrono::seconds{1795428000}};
    RuleTestCase test;
    test.name = "a canary 1.5x slower, expected quiet";
    RuleTestInput stable = steady(0s, 5min, 0.020);
    stable.labels = {{"variant", "stable"}};
    RuleTestInput canary = steady(0s, 5min, 0.030);
    canary.labels = {{"variant", "canary"}};
    test.inputs = {stable, canary};
    test.expects = {expectAt(3min, {"canary-p99"}, {})};
    file.tests.push_back(test);
    const auto outcomes = runRuleTests(file);
    REQUIRE(outcomes.size() == 1);
    REQUIRE(outcomes[0].failures.size() == 1);
    const std::string& f = outcomes[0].failures[0];
    INFO(f);
    CHECK(f.find("      canary-p99: inactive (p99=30ms vs baseline 20ms (1.50x, threshold 2x), 600 samples)\n") !=
          std::string::npos);
    const auto cmp = f.find("      canary-slower: firing since ");
    REQUIRE(cmp != std::string::npos);
    CHECK(f.find(" (p50 +50.0% vs baseline, p=", cmp) != std::string::npos);
    CHECK(f.find(" (threshold +10.0%, p < 0.02), 600 samples)\n") != std::string::npos);
}
