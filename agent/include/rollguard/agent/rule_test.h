#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/rules/clock.h"

namespace rollguard::agent {

/// Input of a rule test: either generated events or literal log lines.
///  - generated: from `from` to `to` (offsets from the test start), `rate` events per
///    second, each with the next latency of `latencies` (cycled; empty: no latency), and
///    errors spread evenly so that exactly round(n * error_ratio) of any n first events
///    are errors;
///  - literal: `lines` go through the source's own line parser at offset `at`, as if
///    they had been appended then.
struct RuleTestInput {
    std::string source;
    std::chrono::nanoseconds from{0};
    std::chrono::nanoseconds to{0};
    double rate = 0.0;
    std::vector<double> latencies;  ///< seconds
    double error_ratio = 0.0;
    /// The generated events' labels (names of the source's `labels`); they reach the
    /// streams of the rule selections they match, as the tailer's label sets do.
    std::vector<std::pair<std::string, std::string>> labels;
    std::chrono::nanoseconds at{0};
    std::vector<std::string> lines;  ///< non-empty: a literal input
    SourceLocation location;
};

/// What must hold at offset `at` (evaluated at the tick at or just before it). Each
/// list that is given must match exactly (order does not matter for `firing` and
/// `pending`; `hooks` lists every hook that would have run so far, in order).
struct RuleTestExpect {
    std::chrono::nanoseconds at{0};
    std::optional<std::vector<std::string>> firing;
    std::optional<std::vector<std::string>> pending;
    std::optional<std::vector<std::string>> hooks;
    SourceLocation location;
};

struct RuleTestCase {
    std::string name;
    std::vector<RuleTestInput> inputs;
    std::vector<RuleTestExpect> expects;
    SourceLocation location;
};

/// A rule test file: the config under test (a path relative to the test file) and
/// its test cases, each run from a fresh state starting at `start`.
struct RuleTestFile {
    std::string path;
    Config config;
    rules::TimePoint start{};
    std::vector<RuleTestCase> tests;
};

struct RuleTestLoad {
    std::optional<RuleTestFile> file;
    Diagnostics diagnostics;
    bool ok() const { return file.has_value(); }
};

/// Parses a rule test file (TOML) and loads the config it names; every problem in
/// either file is a diagnostic with file:line:col.
RuleTestLoad loadRuleTestFile(const std::string& path);

/// The result of one test case: `failures` holds one readable paragraph per unmet
/// expectation (what was expected, what happened, and each rule's state and value).
struct RuleTestOutcome {
    std::string name;
    std::vector<std::string> failures;
    bool passed() const { return failures.empty(); }
};

/// Runs every test case through the daemon's judgement code (Judge) with a simulated
/// clock ticking at the config's `agent.tick`; hooks are never run, only recorded.
std::vector<RuleTestOutcome> runRuleTests(const RuleTestFile& file);

}  // namespace rollguard::agent
