#pragma once
// The config the daemon tests start from, built in code (no loader).

#include <chrono>

#include "rollguard/agent/config.h"
#include "temp_dir.h"

namespace rollguard::testing {

/// tick 1s, no listener, host "unit"; a json_log source "app" on `<dir>/app.log`, read
/// from the beginning, latency in `duration_ms` (ms), errors at status >= 500; a critical
/// rule "errors": error_ratio above 0.05 over 10 s, for 5 s, at least 50 samples, no
/// hooks. Tests add their hooks, rules and sections.
inline agent::Config daemonTestConfig(const TempDir& dir) {
    using namespace std::chrono_literals;
    agent::Config c;
    c.path = (dir / "test.toml").string();
    c.agent.tick = 1s;
    c.agent.listen = "";
    c.agent.hostname = "unit";

    agent::LogSourceConfig src;
    src.name = "app";
    src.paths = {(dir / "app.log").string()};
    src.read_from = agent::ReadFrom::Beginning;
    agent::LatencyField latency;
    latency.field = "duration_ms";
    latency.unit = agent::LatencyUnit::Milliseconds;
    src.latency = latency;
    src.error.kind = agent::ErrorPredicate::Kind::NumberAtLeast;
    src.error.field = "status";
    src.error.gte = 500;
    c.sources.push_back(src);

    rules::RuleSpec critical;
    critical.name = "errors";
    critical.severity = rules::Severity::Critical;
    critical.source = "app";
    critical.metric = {rules::MetricKind::ErrorRatio, 0.0, "error_ratio"};
    critical.threshold = 0.05;
    critical.window = 10s;
    critical.for_ = 5s;
    critical.min_samples = 50;
    c.rules.push_back(critical);
    return c;
}

}  // namespace rollguard::testing
