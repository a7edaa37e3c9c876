#include "rollguard/agent/timeline.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <utility>

#include "rollguard/agent/json_writer.h"
#include "rollguard/rules/duration.h"

namespace rollguard::agent {

namespace {

using rules::AlertState;
using rules::TimePoint;

double toEpochSeconds(TimePoint t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

std::string formatNumber(double v, int precision) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    return buf;
}

std::string escapeHtml(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out.push_back(c);
        }
    }
    return out;
}

std::string joined(const std::vector<std::string>& items, const char* sep) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) {
            out += sep;
        }
        out += item;
    }
    return out;
}

ValueShape shapeOf(const RuleTimeline& rule) {
    ValueShape shape = rule.shape;
    shape.metric = rule.metric;
    shape.unit = rule.unit;
    return shape;
}

ValueReading readingOf(const TimelineEvent& e) {
    return ValueReading{e.value, e.threshold, e.baseline, e.mann_whitney};
}

ValueReading readingOf(const TimelinePoint& p) {
    return ValueReading{p.value, p.threshold, p.baseline, p.mann_whitney};
}

/// "HH:MM:SS" in UTC, or "MM-DD HH:MM" when the span covers more than a day.
std::string clockLabel(double epoch_seconds, bool with_date) {
    const auto secs = static_cast<std::time_t>(std::floor(epoch_seconds));
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[32];
    if (with_date) {
        std::strftime(buf, sizeof buf, "%m-%d %H:%M", &tm);
    } else {
        std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    }
    return buf;
}

/// A 1-2-5 step giving about `target` ticks over `span`.
double niceStep(double span, int target) {
    if (!(span > 0.0)) {
        return 1.0;
    }
    const double raw = span / target;
    const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
    for (const double m : {1.0, 2.0, 5.0, 10.0}) {
        if (raw <= m * magnitude) {
            return m * magnitude;
        }
    }
    return 10.0 * magnitude;
}

/// A time step (seconds) from the ones people read on clocks, giving at most ~8 ticks.
double timeStep(double span) {
    static constexpr double kSteps[] = {1,    2,    5,    10,    15,    30,    60,    120,   300,   600,
                                        900,  1800, 3600, 7200,  10800, 21600, 43200, 86400, 172800, 604800};
    for (const double s : kSteps) {
        if (span / s <= 8.0) {
            return s;
        }
    }
    return kSteps[std::size(kSteps) - 1];
}

/// One chart column: the points it covers reduced to min, max and last value.
struct Column {
    bool has_value = false;
    double min = std::numeric_limits<double>::infinity();
    double max = -std::numeric_limits<double>::infinity();
    double last = 0.0;
    bool has_threshold = false;
    double threshold = 0.0;
};

struct Band {
    double from;
    double to;
    AlertState state;
};

struct ChartGeometry {
    double left = 64.0;
    double top = 26.0;
    double width = 1000.0;
    double height = 200.0;
    double t0 = 0.0;
    double t1 = 1.0;
    double v_max = 1.0;

    double x(double t) const { return left + (t - t0) / (t1 - t0) * width; }
    double y(double v) const { return top + height - std::clamp(v / v_max, 0.0, 1.05) * height; }
};

std::string fmt1(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

/// Axis value label in the metric's display unit.
std::string axisLabel(double v, MetricUnit unit) {
    switch (unit) {
        case MetricUnit::Seconds:
            return v == 0.0 ? std::string("0") : rules::formatSeconds(v);
        case MetricUnit::Ratio:
            return formatNumber(v * 100.0, 3) + "%";
        case MetricUnit::PerSecond:
            return formatNumber(v, 3) + "/s";
        case MetricUnit::Change:
            return (v > 0.0 ? "+" : "") + formatNumber(v * 100.0, 3) + "%";
        case MetricUnit::Plain:
            break;
    }
    return formatNumber(v, 3);
}

/// Periods of the same non-inactive state, from each point to the next one.
std::vector<Band> bandsOf(const std::vector<TimelinePoint>& points, double end) {
    std::vector<Band> bands;
    for (std::size_t i = 0; i < points.size(); ++i) {
        const AlertState s = points[i].state;
        if (s != AlertState::Pending && s != AlertState::Firing) {
            continue;
        }
        const double from = toEpochSeconds(points[i].at);
        const double to = i + 1 < points.size() ? toEpochSeconds(points[i + 1].at) : end;
        if (!bands.empty() && bands.back().state == s && bands.back().to == from) {
            bands.back().to = to;
        } else {
            bands.push_back({from, to, s});
        }
    }
    return bands;
}

void renderChart(std::string& html, const RuleTimeline& rule, double t0, double t1, std::size_t max_columns) {
    ChartGeometry g;
    g.t0 = t0;
    g.t1 = t1 > t0 ? t1 : t0 + 1.0;

    const std::size_t columns = std::max<std::size_t>(1, std::min(max_columns, rule.points.size()));
    std::vector<Column> cols(columns);
    double v_max = 0.0;
    for (const auto& p : rule.points) {
        const double frac = (toEpochSeconds(p.at) - g.t0) / (g.t1 - g.t0);
        const auto c = std::min(columns - 1, static_cast<std::size_t>(std::max(0.0, frac) * static_cast<double>(columns)));
        Column& col = cols[c];
        if (p.value && std::isfinite(*p.value)) {
            col.has_value = true;
            col.min = std::min(col.min, *p.value);
            col.max = std::max(col.max, *p.value);
            col.last = *p.value;
            v_max = std::max(v_max, *p.value);
        }
        if (p.threshold && std::isfinite(*p.threshold)) {
            col.has_threshold = true;
            col.threshold = *p.threshold;
            v_max = std::max(v_max, *p.threshold);
        }
    }
    const double step = niceStep(v_max > 0.0 ? v_max * 1.1 : 1.0, 4);
    g.v_max = std::ceil((v_max > 0.0 ? v_max * 1.1 : 1.0) / step) * step;

    const double svg_w = g.left + g.width + 40.0;  // room for the last time label
    const double svg_h = g.top + g.height + 30.0;
    html += "<svg class=\"chart\" viewBox=\"0 0 " + fmt1(svg_w) + " " + fmt1(svg_h) +
            "\" role=\"img\" aria-label=\"" + escapeHtml(rule.rule) + " " + escapeHtml(rule.metric) + "\">\n";

    // State bands under everything else.
    for (const auto& b : bandsOf(rule.points, g.t1)) {
        const double x0 = g.x(b.from);
        const double x1 = std::max(g.x(b.to), x0 + 1.0);
        html += "<rect class=\"" + std::string(b.state == AlertState::Firing ? "firing" : "pending") + "\" x=\"" +
                fmt1(x0) + "\" y=\"" + fmt1(g.top) + "\" width=\"" + fmt1(x1 - x0) + "\" height=\"" +
                fmt1(g.height) + "\"><title>" + rules::toString(b.state) + "</title></rect>\n";
    }

    // Value axis and grid.
    const auto value_ticks = static_cast<int>(std::lround(g.v_max / step));
    for (int i = 0; i <= value_ticks; ++i) {
        const double v = i * step;
        const double y = g.y(v);
        html += "<line class=\"grid\" x1=\"" + fmt1(g.left) + "\" x2=\"" + fmt1(g.left + g.width) + "\" y1=\"" +
                fmt1(y) + "\" y2=\"" + fmt1(y) + "\"/><text class=\"ylabel\" x=\"" + fmt1(g.left - 6.0) + "\" y=\"" +
                fmt1(y + 4.0) + "\">" + escapeHtml(axisLabel(v, rule.unit)) + "</text>\n";
    }
    // Time axis.
    const double span = g.t1 - g.t0;
    const double tstep = timeStep(span);
    const bool with_date = span > 86400.0;
    for (double k = std::ceil(g.t0 / tstep); k * tstep <= g.t1; k += 1.0) {
        const double t = k * tstep;
        const double x = g.x(t);
        html += "<line class=\"tick\" x1=\"" + fmt1(x) + "\" x2=\"" + fmt1(x) + "\" y1=\"" + fmt1(g.top + g.height) +
                "\" y2=\"" + fmt1(g.top + g.height + 5.0) + "\"/><text class=\"xlabel\" x=\"" + fmt1(x) + "\" y=\"" +
                fmt1(g.top + g.height + 18.0) + "\">" + clockLabel(t, with_date) + "</text>\n";
    }

    const auto colX = [&](std::size_t c) {
        return g.left + (static_cast<double>(c) + 0.5) / static_cast<double>(columns) * g.width;
    };
    // Min..max envelope of each column, then the line of last values, broken at gaps.
    std::string envelope;
    std::string line;
    std::string threshold;
    bool line_open = false;
    bool threshold_open = false;
    for (std::size_t c = 0; c < columns; ++c) {
        const Column& col = cols[c];
        const std::string x = fmt1(colX(c));
        if (col.has_value) {
            if (col.max > col.min) {
                envelope += "M" + x + " " + fmt1(g.y(col.min)) + "V" + fmt1(g.y(col.max));
            }
            line += (line_open ? "L" : "M") + x + " " + fmt1(g.y(col.last));
        }
        line_open = col.has_value;
        if (col.has_threshold) {
            threshold += (threshold_open ? "L" : "M") + x + " " + fmt1(g.y(col.threshold));
        }
        threshold_open = col.has_threshold;
    }
    if (!envelope.empty()) {
        html += "<path class=\"envelope\" d=\"" + envelope + "\"/>\n";
    }
    if (!line.empty()) {
        html += "<path class=\"value\" d=\"" + line + "\"/>\n";
    }
    if (!threshold.empty()) {
        html += "<path class=\"threshold\" d=\"" + threshold + "\"><title>threshold</title></path>\n";
    }

    // Hook marks.
    for (const auto& e : rule.events) {
        if (e.hooks.empty()) {
            continue;
        }
        const double x = g.x(toEpochSeconds(e.at));
        const std::string label = joined(e.hooks, ", ");
        html += "<line class=\"hook\" x1=\"" + fmt1(x) + "\" x2=\"" + fmt1(x) + "\" y1=\"" + fmt1(g.top - 4.0) +
                "\" y2=\"" + fmt1(g.top + g.height) + "\"/><text class=\"hooklabel\" x=\"" + fmt1(x + 4.0) + "\" y=\"" +
                fmt1(g.top - 8.0) + "\">hooks: " + escapeHtml(label) + "</text>\n";
    }
    html += "<rect class=\"frame\" x=\"" + fmt1(g.left) + "\" y=\"" + fmt1(g.top) + "\" width=\"" + fmt1(g.width) +
            "\" height=\"" + fmt1(g.height) + "\"/>\n</svg>\n";
}

std::optional<TimePoint> firstMoveTo(const RuleTimeline& rule, AlertState to) {
    for (const auto& e : rule.events) {
        if (e.to == to) {
            return e.at;
        }
    }
    return std::nullopt;
}

std::string displayName(const RuleTimeline& rule) {
    return rule.group.empty() ? rule.rule : rule.rule + " {" + rule.group + "}";
}

constexpr const char* kStyle = R"(<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 2px}
.meta{color:#5b6475;margin:0 0 12px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border-bottom:1px solid #e3e6ec;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f5f6f9;font-weight:600}
.critical{color:#b3261e;font-weight:600}.warning{color:#a86400;font-weight:600}
.summary td{white-space:nowrap}.summary td:nth-child(3),.summary td:nth-child(7){white-space:normal;min-width:14em}
.chart{width:100%;max-width:1080px;height:auto;display:block}
.chart text{font:11px system-ui,sans-serif;fill:#5b6475}
.chart .ylabel{text-anchor:end}.chart .xlabel{text-anchor:middle}
.chart .grid{stroke:#e9ecf1}.chart .tick{stroke:#8a93a5}
.chart .frame{fill:none;stroke:#b8bfcc}
.chart .pending{fill:#f6c343;fill-opacity:.28}.chart .firing{fill:#e5484d;fill-opacity:.25}
.chart .envelope{stroke:#8fb3e8;stroke-width:2;fill:none}
.chart .value{stroke:#1f5fbf;stroke-width:1.5;fill:none}
.chart .threshold{stroke:#b3261e;stroke-width:1.5;stroke-dasharray:6 4;fill:none}
.chart .hook{stroke:#6b2fb3;stroke-width:1.5}.chart .hooklabel{fill:#6b2fb3;font-weight:600}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:12px;height:12px;vertical-align:-2px;margin-right:4px}
.events td{font-family:ui-monospace,monospace;font-size:12px}
</style>
)";

}  // namespace

TimelineBuilder::TimelineBuilder(std::string config_path) { timeline_.config_path = std::move(config_path); }

std::size_t TimelineBuilder::addRule(RuleTimeline header) {
    timeline_.rules.push_back(std::move(header));
    return timeline_.rules.size() - 1;
}

void TimelineBuilder::addPoint(std::size_t index, const TimelinePoint& point) {
    if (!timeline_.from || point.at < *timeline_.from) {
        timeline_.from = point.at;
    }
    if (!timeline_.to || point.at > *timeline_.to) {
        timeline_.to = point.at;
    }
    timeline_.rules.at(index).points.push_back(point);
}

void TimelineBuilder::addEvent(std::size_t index, TimelineEvent event) {
    timeline_.rules.at(index).events.push_back(std::move(event));
}

std::string renderTimelineText(const Timeline& timeline) {
    std::string out = "rule timeline";
    if (timeline.from && timeline.to) {
        out += " " + formatRfc3339(*timeline.from) + " .. " + formatRfc3339(*timeline.to);
    }
    out += "\n";
    for (const auto& rule : timeline.rules) {
        out += "  " + displayName(rule) + " (" + rule.severity + "): " + rule.metric + " " + rule.condition + "\n";
        if (rule.events.empty()) {
            out += "    never breached\n";
            continue;
        }
        for (const auto& e : rule.events) {
            out += "    " + formatRfc3339(e.at) + "  " + rules::toString(e.from) + " -> " + rules::toString(e.to) +
                   "  " + describeRuleValue(shapeOf(rule), readingOf(e));
            out += "  " + std::to_string(e.samples) + " samples";
            if (!e.hooks.empty()) {
                out += "  hooks (not run): " + joined(e.hooks, ", ");
            }
            if (!e.note.empty()) {
                out += "  (" + e.note + ")";
            }
            out += "\n";
        }
    }
    return out;
}

void writeTimelineJson(JsonWriter& out, const Timeline& timeline, bool with_points) {
    const auto optional = [&out](const std::optional<double>& v) {
        if (v) {
            out.value(*v);
        } else {
            out.null();
        }
    };
    out.beginArray();
    for (const auto& rule : timeline.rules) {
        out.beginObject();
        out.key("rule").value(rule.rule);
        out.key("group").value(rule.group);
        out.key("severity").value(rule.severity);
        out.key("metric").value(rule.metric);
        out.key("condition").value(rule.condition);
        out.key("events").beginArray();
        for (const auto& e : rule.events) {
            out.beginObject();
            out.key("at").value(formatRfc3339(e.at));
            out.key("from").value(rules::toString(e.from));
            out.key("to").value(rules::toString(e.to));
            out.key("value");
            optional(e.value);
            out.key("threshold");
            optional(e.threshold);
            out.key("samples").value(e.samples);
            writeValueFields(out, readingOf(e));
            out.key("hooks").beginArray();
            for (const auto& h : e.hooks) {
                out.value(h);
            }
            out.endArray();
            if (!e.note.empty()) {
                out.key("note").value(e.note);
            }
            out.endObject();
        }
        out.endArray();
        if (with_points) {
            out.key("points").beginArray();
            for (const auto& p : rule.points) {
                out.beginObject();
                out.key("at").value(formatRfc3339(p.at));
                out.key("value");
                optional(p.value);
                out.key("threshold");
                optional(p.threshold);
                out.key("samples").value(p.samples);
                writeValueFields(out, readingOf(p));
                out.key("state").value(rules::toString(p.state));
                out.endObject();
            }
            out.endArray();
        }
        out.endObject();
    }
    out.endArray();
}

std::string renderTimelineHtml(const Timeline& timeline, std::size_t max_columns) {
    const double t0 = timeline.from ? toEpochSeconds(*timeline.from) : 0.0;
    const double t1 = timeline.to ? toEpochSeconds(*timeline.to) : t0 + 1.0;

    std::string html =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>rollguard replay: " +
        escapeHtml(timeline.config_path) + "</title>\n" + kStyle + "</head>\n<body>\n";
    html += "<h1>rollguard replay timeline</h1>\n<p class=\"meta\">config " + escapeHtml(timeline.config_path);
    if (timeline.from && timeline.to) {
        html += " &middot; " + formatRfc3339(*timeline.from) + " to " + formatRfc3339(*timeline.to) + " (UTC)";
    }
    html += " &middot; hooks are never run by a replay; the marks show where they would have run.</p>\n";
    html +=
        "<p class=\"legend\"><span><i class=\"sw\" style=\"background:#1f5fbf\"></i>metric (band: min..max per "
        "column)</span><span><i class=\"sw\" style=\"background:#b3261e\"></i>threshold</span><span><i class=\"sw\" "
        "style=\"background:#f6c343\"></i>pending</span><span><i class=\"sw\" style=\"background:#e5484d\"></i>"
        "firing</span><span><i class=\"sw\" style=\"background:#6b2fb3\"></i>hooks</span></p>\n";

    html += "<table class=\"summary\">\n<tr><th>rule</th><th>severity</th><th>condition</th><th>first pending</th>"
            "<th>first firing</th><th>resolved</th><th>hooks</th></tr>\n";
    for (const auto& rule : timeline.rules) {
        const auto pending = firstMoveTo(rule, AlertState::Pending);
        const auto firing = firstMoveTo(rule, AlertState::Firing);
        const auto resolved = firstMoveTo(rule, AlertState::Resolved);
        std::vector<std::string> hooks;
        for (const auto& e : rule.events) {
            for (const auto& h : e.hooks) {
                if (std::find(hooks.begin(), hooks.end(), h) == hooks.end()) {
                    hooks.push_back(h);
                }
            }
        }
        const auto when = [](const std::optional<TimePoint>& t) {
            return t ? formatRfc3339(*t) : std::string("&ndash;");
        };
        html += "<tr><td><a href=\"#r" + std::to_string(&rule - timeline.rules.data()) + "\">" +
                escapeHtml(displayName(rule)) + "</a></td><td class=\"" + escapeHtml(rule.severity) + "\">" +
                escapeHtml(rule.severity) + "</td><td>" + escapeHtml(rule.metric + " " + rule.condition) + "</td><td>" +
                when(pending) + "</td><td>" + when(firing) + "</td><td>" + when(resolved) + "</td><td>" +
                escapeHtml(joined(hooks, ", ")) + "</td></tr>\n";
    }
    html += "</table>\n";

    for (const auto& rule : timeline.rules) {
        html += "<h2 id=\"r" + std::to_string(&rule - timeline.rules.data()) + "\">" + escapeHtml(displayName(rule)) +
                " <span class=\"" + escapeHtml(rule.severity) + "\">" + escapeHtml(rule.severity) + "</span></h2>\n";
        html += "<p class=\"meta\">" + escapeHtml(rule.metric + " " + rule.condition) + "</p>\n";
        renderChart(html, rule, t0, t1, max_columns);
        if (!rule.events.empty()) {
            html += "<table class=\"events\">\n<tr><th>time</th><th>change</th><th>value</th><th>threshold</th>"
                    "<th>samples</th><th>hooks</th></tr>\n";
            for (const auto& e : rule.events) {
                html += "<tr><td>" + formatRfc3339(e.at) + "</td><td>" + rules::toString(e.from) + " &rarr; " +
                        rules::toString(e.to) + "</td><td>" + escapeHtml(formatRuleValue(shapeOf(rule), readingOf(e))) +
                        "</td><td>" + escapeHtml(e.threshold ? formatMetricValue(*e.threshold, rule.unit) : "") +
                        "</td><td>" + std::to_string(e.samples) + "</td><td>" +
                        escapeHtml(joined(e.hooks, ", ") + (e.note.empty() ? "" : " (" + e.note + ")")) +
                        "</td></tr>\n";
            }
            html += "</table>\n";
        }
    }
    html += "</body>\n</html>\n";
    return html;
}

}  // namespace rollguard::agent
