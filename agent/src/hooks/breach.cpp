// The breach as hooks see it: the generic JSON body and the script environment.
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_writer.h"
#include "rollguard/agent/rule_value.h"

namespace rollguard::agent {
namespace detail {

std::string formatDouble(double value, bool json) {
    if (std::isnan(value)) {
        return json ? "null" : "NaN";
    }
    if (std::isinf(value)) {
        if (json) {
            return "null";
        }
        return value > 0 ? "+Inf" : "-Inf";
    }
    std::array<char, 64> buf{};
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    if (ec != std::errc{}) {
        return json ? "null" : "NaN";  // cannot happen with 64 bytes; stay valid anyway
    }
    return std::string(buf.data(), end);
}

std::string formatSeconds(std::chrono::nanoseconds d) {
    return formatDouble(std::chrono::duration<double>(d).count(), false) + "s";
}

std::chrono::milliseconds elapsedSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

std::string trimText(std::string_view text) {
    constexpr std::string_view kSpace = " \t\r\n\f\v";
    const auto first = text.find_first_not_of(kSpace);
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(kSpace);
    return std::string(text.substr(first, last - first + 1));
}


void writeBreachFields(JsonWriter& w, const BreachEvent& event) {
    w.key("rule").value(event.rule);
    w.key("severity").value(event.severity);
    w.key("state").value(event.state);
    w.key("source").value(event.source);
    w.key("metric").value(event.metric);
    w.key("value").value(event.value);
    w.key("threshold").value(event.threshold);
    w.key("comparison").value(event.comparison);
    w.key("samples").value(event.samples);
    w.key("window_seconds").value(seconds(event.window));
    w.key("for_seconds").value(seconds(event.for_));
    w.key("since").value(formatRfc3339(event.since));
    w.key("fired_at").value(formatRfc3339(event.fired_at));
    w.key("host").value(event.host);
    w.key("summary").value(event.summary);
    w.key("description").value(event.description);
    writeValueFields(w, valueReadingOf(event));
}

}  // namespace detail

ValueReading valueReadingOf(const BreachEvent& event) {
    ValueReading r;
    if (!std::isnan(event.value)) {
        r.value = event.value;
    }
    if (!std::isnan(event.threshold)) {
        r.threshold = event.threshold;
    }
    r.baseline = event.baseline;
    r.mann_whitney = event.mann_whitney;
    return r;
}

std::string breachToJson(const BreachEvent& event) {
    JsonWriter w;
    w.beginObject();
    detail::writeBreachFields(w, event);
    w.endObject();
    return w.str();
}

std::vector<std::pair<std::string, std::string>> breachToEnv(const BreachEvent& event) {
    JsonWriter steps;
    steps.beginArray();
    int failed = 0;
    for (const auto& step : event.steps) {
        steps.beginObject().key("hook").value(step.hook).key("status").value(step.status);
        steps.key("message").value(step.message).endObject();
        failed += step.status == "failed" ? 1 : 0;
    }
    steps.endArray();
    std::vector<std::pair<std::string, std::string>> env{
        {"ROLLGUARD_RULE", event.rule},
        {"ROLLGUARD_SEVERITY", event.severity},
        {"ROLLGUARD_STATE", event.state},
        {"ROLLGUARD_SOURCE", event.source},
        {"ROLLGUARD_METRIC", event.metric},
        {"ROLLGUARD_VALUE", detail::formatDouble(event.value, false)},
        {"ROLLGUARD_THRESHOLD", detail::formatDouble(event.threshold, false)},
        {"ROLLGUARD_COMPARISON", event.comparison},
        {"ROLLGUARD_SAMPLES", std::to_string(event.samples)},
        {"ROLLGUARD_WINDOW_SECONDS", detail::formatDouble(detail::seconds(event.window), false)},
        {"ROLLGUARD_FOR_SECONDS", detail::formatDouble(detail::seconds(event.for_), false)},
        {"ROLLGUARD_SINCE", formatRfc3339(event.since)},
        {"ROLLGUARD_FIRED_AT", formatRfc3339(event.fired_at)},
        {"ROLLGUARD_HOST", event.host},
        {"ROLLGUARD_SUMMARY", event.summary},
        {"ROLLGUARD_INCIDENT_ID", incidentId(event)},
        {"ROLLGUARD_REASON", event.reason},
        {"ROLLGUARD_STEPS", steps.str()},
        {"ROLLGUARD_STEPS_FAILED", std::to_string(failed)},
    };
    if (event.rollout_percent) {
        env.emplace_back("ROLLGUARD_ROLLOUT_PERCENT", std::to_string(*event.rollout_percent));
        env.emplace_back("ROLLGUARD_ROLLOUT_PREVIOUS_PERCENT", std::to_string(event.rollout_previous_percent));
    }
    return env;
}

}  // namespace rollguard::agent
