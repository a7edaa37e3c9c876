#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace rollguard::testing {

/// One rule (an ungrouped one) as GET /api/v1/status shows it.
struct RuleView {
    std::string state;  ///< "inactive" | "pending" | "firing" | "resolved"
    std::optional<double> value;
    std::optional<double> threshold;
    std::int64_t samples = 0;
};

/// What GET /api/v1/status says about the agent's evaluations and one rule.
struct StatusView {
    std::int64_t evaluations = 0;
    std::optional<RuleView> rule;  ///< nullopt: no rule of that name
};

/// GET /api/v1/status of the agent on 127.0.0.1:`port`: its evaluation count and the rule
/// named `rule` ("": none). An empty view when the agent does not answer.
StatusView agentStatus(std::uint16_t port, const std::string& rule = "");

/// agentStatus(port, name).rule.
std::optional<RuleView> ruleStatus(std::uint16_t port, const std::string& name);

/// The value of the first sample of the agent's GET /metrics on 127.0.0.1:`port` whose
/// line starts with `prefix`: its name and the leading labels as the agent prints them
/// (sorted by name), e.g. `rollguard_scrape_errors_total{kind="http_status",series="",source="api",`.
/// nullopt when the agent does not answer or has no such sample. For counters, which
/// show that something happened after it is over (a failed scrape, say), where a status
/// value only shows it while it lasts.
std::optional<double> agentMetric(std::uint16_t port, const std::string& prefix);

/// Waits (up to `timeout`) until the agent has evaluated its rules `n` more times than now.
bool evaluationsPass(std::uint16_t port, std::int64_t n,
                     std::chrono::milliseconds timeout = std::chrono::seconds{30});

}  // namespace rollguard::testing
