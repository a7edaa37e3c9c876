#include "agent_status.h"

#include <exception>
#include <string>

#include <simdjson.h>

#include "http_client.h"
#include "process.h"

namespace rollguard::testing {

StatusView agentStatus(std::uint16_t port, const std::string& rule) {
    StatusView out;
    const auto response = httpGet(port, "/api/v1/status");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    simdjson::dom::array rules;
    if (response.status != 200 || parser.parse(response.body).get(doc) != simdjson::SUCCESS) {
        return out;
    }
    std::int64_t evaluations = 0;
    if (doc["evaluations"].get(evaluations) == simdjson::SUCCESS) {
        out.evaluations = evaluations;
    }
    if (rule.empty() || doc["rules"].get(rules) != simdjson::SUCCESS) {
        return out;
    }
    for (const auto r : rules) {
        std::string_view name;
        if (r["name"].get(name) != simdjson::SUCCESS || name != rule) {
            continue;
        }
        RuleView view;
        if (std::string_view state; r["state"].get(state) == simdjson::SUCCESS) {
            view.state = std::string(state);
        }
        if (double v = 0; r["value"].get(v) == simdjson::SUCCESS) {
            view.value = v;
        }
        if (double t = 0; r["threshold"].get(t) == simdjson::SUCCESS) {
            view.threshold = t;
        }
        if (std::int64_t n = 0; r["samples"].get(n) == simdjson::SUCCESS) {
            view.samples = n;
        }
        out.rule = view;
        break;
    }
    return out;
}

std::optional<RuleView> ruleStatus(std::uint16_t port, const std::string& name) {
    return agentStatus(port, name).rule;
}

std::optional<double> agentMetric(std::uint16_t port, const std::string& prefix) {
    const auto response = httpGet(port, "/metrics");
    if (response.status != 200) {
        return std::nullopt;
    }
    const std::string& text = response.body;
    std::size_t at = 0;
    while (at < text.size()) {
        std::size_t end = text.find('\n', at);
        if (end == std::string::npos) {
            end = text.size();
        }
        const std::string line = text.substr(at, end - at);
        if (line.rfind(prefix, 0) == 0) {
            const auto space = line.rfind(' ');  // "name{labels} value"
            try {
                return space == std::string::npos ? std::nullopt
                                                  : std::optional<double>(std::stod(line.substr(space + 1)));
            } catch (const std::exception&) {
                return std::nullopt;
            }
        }
        at = end + 1;
    }
    return std::nullopt;
}

bool evaluationsPass(std::uint16_t port, std::int64_t n, std::chrono::milliseconds timeout) {
    const std::int64_t start = agentStatus(port).evaluations;
    return start > 0 && eventually([&] { return agentStatus(port).evaluations >= start + n; }, timeout);
}

}  // namespace rollguard::testing
