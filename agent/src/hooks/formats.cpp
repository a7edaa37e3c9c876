// The bodies a webhook sends: our JSON, Alertmanager's webhook payload, Slack, PagerDuty
// Events v2, and the simple {{placeholder}} templates.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_writer.h"

namespace rollguard::agent {
namespace {

// Alertmanager's spelling of "not ended yet" (Go's zero time).
constexpr std::string_view kZeroTime = "0001-01-01T00:00:00Z";

bool isResolved(const BreachEvent& event) {
    return event.state == "resolved";
}

void writeLabels(JsonWriter& w, const std::vector<std::pair<std::string, std::string>>& labels) {
    w.beginObject();
    for (const auto& [k, v] : labels) {
        w.key(k).value(v);
    }
    w.endObject();
}

void writeSteps(JsonWriter& w, const std::vector<HookStep>& steps) {
    w.beginArray();
    for (const auto& step : steps) {
        w.beginObject().key("hook").value(step.hook).key("status").value(step.status);
        w.key("message").value(step.message).endObject();
    }
    w.endArray();
}

/// "disable-router: ok (set A=0 in /x.env); restart: failed (exit status 1)".
std::string stepsLine(const std::vector<HookStep>& steps) {
    std::string out;
    for (const auto& step : steps) {
        if (!out.empty()) {
            out += "; ";
        }
        out += step.hook + ": " + step.status + " (" + step.message + ")";
    }
    return out;
}

std::string renderJson(const BreachEvent& event, const PayloadContext& context) {
    JsonWriter w;
    w.beginObject();
    detail::writeBreachFields(w, event);
    w.key("labels");
    writeLabels(w, event.labels);
    w.key("group").value(event.group);
    w.key("incident_id").value(incidentId(event));
    if (event.rollout_percent) {
        w.key("rollout").beginObject();
        w.key("percent").value(*event.rollout_percent);
        w.key("previous_percent").value(event.rollout_previous_percent);
        w.endObject();
    }
    if (isResolved(event)) {
        w.key("resolved_at").value(formatRfc3339(event.resolved_at));
    }
    if (!context.external_url.empty()) {
        w.key("status_url").value(detail::statusUrl(context.external_url));
    }
    if (!event.reason.empty()) {
        w.key("reason").value(event.reason);
    }
    if (!event.steps.empty()) {
        w.key("steps");
        writeSteps(w, event.steps);
    }
    w.endObject();
    return w.str();
}

std::string fingerprint(const std::vector<std::pair<std::string, std::string>>& labels) {
    std::string text;
    for (const auto& [k, v] : labels) {
        text += k;
        text += '\xff';  // cannot occur in UTF-8, so no two label sets share a text
        text += v;
        text += '\xff';
    }
    return sha256Hex(text).substr(0, 16);
}

std::string renderAlertmanager(const BreachEvent& event, const PayloadContext& context) {
    const auto labels = detail::alertLabels(event);
    const std::string status = isResolved(event) ? "resolved" : "firing";
    JsonWriter w;
    w.beginObject();
    w.key("version").value("4");
    std::string group_key = "{}:{alertname=\"";
    group_key += event.rule;
    group_key += "\"}";
    w.key("groupKey").value(group_key);
    w.key("truncatedAlerts").value(0);
    w.key("status").value(status);
    w.key("receiver").value(context.hook_name);
    w.key("groupLabels").beginObject().key("alertname").value(event.rule).endObject();
    w.key("commonLabels");
    writeLabels(w, labels);
    w.key("commonAnnotations").beginObject();
    w.key("description").value(event.description);
    w.key("summary").value(event.summary);
    w.endObject();
    w.key("externalURL").value(context.external_url);
    w.key("alerts").beginArray().beginObject();
    w.key("status").value(status);
    w.key("labels");
    writeLabels(w, labels);
    w.key("annotations").beginObject();
    w.key("description").value(event.description);
    w.key("summary").value(event.summary);
    w.endObject();
    w.key("startsAt").value(formatRfc3339(event.since));
    w.key("endsAt").value(isResolved(event) ? formatRfc3339(event.resolved_at) : std::string(kZeroTime));
    w.key("generatorURL").value(detail::statusUrl(context.external_url));
    w.key("fingerprint").value(fingerprint(labels));
    w.endObject().endArray();
    w.endObject();
    return w.str();
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}

std::string slackLine(const BreachEvent& event) {
    std::string icon;
    if (isResolved(event)) {
        icon = ":white_check_mark:";
    } else if (event.severity == "critical") {
        icon = ":red_circle:";
    } else {
        icon = ":large_orange_circle:";
    }
    std::string what = event.summary;
    if (what.empty()) {
        what = event.metric + " " + detail::formatDouble(event.value, false) + " " + event.comparison + " " +
               detail::formatDouble(event.threshold, false) + " over " + detail::formatSeconds(event.window);
    }
    return icon + " [" + upper(event.state) + "] " + event.rule + " on " + event.host + ": " + what;
}

std::string renderSlack(const BreachEvent& event, const PayloadContext& context) {
    const char* color = isResolved(event) ? "#2eb67d" : (event.severity == "critical" ? "#d00000" : "#f2c744");
    JsonWriter w;
    w.beginObject();
    w.key("text").value(slackLine(event));
    w.key("attachments").beginArray().beginObject();
    w.key("color").value(color);
    w.key("fallback").value(slackLine(event));
    w.key("fields").beginArray();
    auto field = [&](std::string_view title, const std::string& value) {
        w.beginObject().key("title").value(title).key("value").value(value).key("short").value(true).endObject();
    };
    field("Severity", event.severity);
    // An effect size or a ratio printed as a bare number reads as the metric itself.
    field("Value", event.value_text.empty() ? detail::formatDouble(event.value, false) : event.value_text);
    field("Threshold", event.comparison + " " + detail::formatDouble(event.threshold, false));
    field("Window", detail::formatSeconds(event.window));
    field("Samples", std::to_string(event.samples));
    field("Source", event.source);
    if (!event.steps.empty()) {
        w.beginObject().key("title").value("Steps").key("value").value(stepsLine(event.steps));
        w.key("short").value(false).endObject();
    }
    w.endArray();
    if (!context.external_url.empty()) {
        w.key("title_link").value(detail::statusUrl(context.external_url));
    }
    if (!event.description.empty()) {
        w.key("text").value(event.description);
    }
    w.endObject().endArray();
    w.endObject();
    return w.str();
}

std::string renderPagerDuty(const BreachEvent& event, const PayloadContext& context) {
    JsonWriter w;
    w.beginObject();
    w.key("routing_key").value(context.routing_key);
    w.key("event_action").value(isResolved(event) ? "resolve" : "trigger");
    w.key("dedup_key").value(incidentId(event));
    if (!isResolved(event)) {
        w.key("payload").beginObject();
        w.key("summary").value(event.summary.empty() ? slackLine(event) : event.rule + ": " + event.summary);
        w.key("source").value(event.host);
        w.key("severity").value(event.severity == "critical" ? "critical" : "warning");
        w.key("timestamp").value(formatRfc3339(event.fired_at));
        w.key("component").value(event.source);
        if (!event.group.empty()) {
            w.key("group").value(event.group);
        }
        w.key("class").value(event.metric);
        w.key("custom_details").beginObject();
        w.key("rule").value(event.rule);
        w.key("value").value(event.value);
        w.key("threshold").value(event.threshold);
        w.key("comparison").value(event.comparison);
        w.key("samples").value(event.samples);
        w.key("window_seconds").value(detail::seconds(event.window));
        writeValueFields(w, valueReadingOf(event));
        w.key("since").value(formatRfc3339(event.since));
        w.key("description").value(event.description);
        w.key("labels");
        writeLabels(w, event.labels);
        if (!event.steps.empty()) {
            w.key("steps");
            writeSteps(w, event.steps);
        }
        w.endObject();
        w.endObject();
        if (!context.external_url.empty()) {
            w.key("links").beginArray().beginObject();
            w.key("href").value(detail::statusUrl(context.external_url));
            w.key("text").value("rollguard status");
            w.endObject().endArray();
        }
    }
    w.endObject();
    return w.str();
}

// JSON string contents without the quotes.
std::string jsonEscaped(std::string_view s) {
    std::string quoted;
    appendJsonString(quoted, s);
    return quoted.substr(1, quoted.size() - 2);
}

}  // namespace

namespace detail {

std::string statusUrl(std::string_view external_url) {
    if (external_url.empty()) {
        return {};
    }
    std::string base(external_url);
    while (!base.empty() && base.back() == '/') {
        base.pop_back();
    }
    return base + "/api/v1/status";
}

std::vector<std::pair<std::string, std::string>> alertLabels(const BreachEvent& event) {
    std::vector<std::pair<std::string, std::string>> labels{
        {"alertname", event.rule}, {"severity", event.severity}, {"source", event.source},
        {"rule", event.rule},      {"instance", event.host},     {"metric", event.metric},
    };
    if (!event.group.empty()) {
        labels.emplace_back("group", event.group);
    }
    for (const auto& [k, v] : event.labels) {
        // An init-capture: clang before 16 cannot capture a structured binding.
        auto it = std::find_if(labels.begin(), labels.end(), [&name = k](const auto& kv) { return kv.first == name; });
        if (it == labels.end()) {
            labels.emplace_back(k, v);
        }
        // Our own labels win: a configured "alertname" must not re-route the alert.
    }
    std::sort(labels.begin(), labels.end());
    return labels;
}

}  // namespace detail

std::string renderWebhookBody(WebhookFormat format, const BreachEvent& event, const PayloadContext& context) {
    switch (format) {
        case WebhookFormat::Json:
            return renderJson(event, context);
        case WebhookFormat::Alertmanager:
            return renderAlertmanager(event, context);
        case WebhookFormat::Slack:
            return renderSlack(event, context);
        case WebhookFormat::PagerDuty:
            return renderPagerDuty(event, context);
    }
    return renderJson(event, context);
}

std::string renderBodyTemplate(std::string_view tmpl, const BreachEvent& event, const PayloadContext& context,
                               bool json_escape) {
    auto lookup = [&](std::string_view name, std::string& out) -> bool {
        using detail::formatDouble;
        if (name == "json") {
            out = renderJson(event, context);
            return true;  // already JSON: inserted raw
        }
        if (name == "rule") {
            out = event.rule;
        } else if (name == "severity") {
            out = event.severity;
        } else if (name == "state") {
            out = event.state;
        } else if (name == "source") {
            out = event.source;
        } else if (name == "metric") {
            out = event.metric;
        } else if (name == "value") {
            out = formatDouble(event.value, false);
        } else if (name == "threshold") {
            out = formatDouble(event.threshold, false);
        } else if (name == "comparison") {
            out = event.comparison;
        } else if (name == "samples") {
            out = std::to_string(event.samples);
        } else if (name == "window_seconds") {
            out = formatDouble(detail::seconds(event.window), false);
        } else if (name == "for_seconds") {
            out = formatDouble(detail::seconds(event.for_), false);
        } else if (name == "since") {
            out = formatRfc3339(event.since);
        } else if (name == "fired_at") {
            out = formatRfc3339(event.fired_at);
        } else if (name == "resolved_at") {
            out = isResolved(event) ? formatRfc3339(event.resolved_at) : std::string();
        } else if (name == "host") {
            out = event.host;
        } else if (name == "summary") {
            out = event.summary;
        } else if (name == "description") {
            out = event.description;
        } else if (name == "group") {
            out = event.group;
        } else if (name == "incident_id") {
            out = incidentId(event);
        } else if (name == "status_url") {
            out = detail::statusUrl(context.external_url);
        } else if (name == "reason") {
            out = event.reason;
        } else if (name == "steps") {
            out = stepsLine(event.steps);
        } else if (name == "rollout_percent") {
            out = event.rollout_percent ? std::to_string(*event.rollout_percent) : std::string();
        } else if (name == "rollout_previous_percent") {
            out = event.rollout_percent ? std::to_string(event.rollout_previous_percent) : std::string();
        } else {
            return false;
        }
        if (json_escape) {
            out = jsonEscaped(out);
        }
        return true;
    };

    std::string out;
    std::size_t pos = 0;
    while (pos < tmpl.size()) {
        const auto open = tmpl.find("{{", pos);
        if (open == std::string_view::npos) {
            break;
        }
        const auto close = tmpl.find("}}", open + 2);
        if (close == std::string_view::npos) {
            break;
        }
        out.append(tmpl.substr(pos, open - pos));
        const std::string name = detail::trimText(tmpl.substr(open + 2, close - open - 2));
        std::string value;
        if (lookup(name, value)) {
            out += value;
        } else {
            out.append(tmpl.substr(open, close + 2 - open));
        }
        pos = close + 2;
    }
    out.append(tmpl.substr(pos));
    return out;
}

}  // namespace rollguard::agent
