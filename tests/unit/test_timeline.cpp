// The replay timeline: text, JSON and the self-contained HTML page.

#include <catch2/catch.hpp>

#include <chrono>
#include <utility>
#include <string>

#include "rollguard/agent/json_writer.h"
#include "rollguard/agent/timeline.h"

using namespace std::chrono_literals;
using rollguard::agent::formatMetricValue;
using rollguard::agent::JsonWriter;
using rollguard::agent::MetricUnit;
using rollguard::agent::renderTimelineHtml;
using rollguard::agent::renderTimelineText;
using rollguard::agent::RuleTimeline;
using rollguard::agent::Timeline;
using rollguard::agent::TimelineBuilder;
using rollguard::agent::TimelineEvent;
using rollguard::agent::TimelinePoint;
using rollguard::agent::writeTimelineJson;
using rollguard::rules::AlertState;
using rollguard::rules::TimePoint;

namespace {

// 2026-11-23T10:00:00Z
const TimePoint kStart{std::chrono::seconds{1795428000}};

std::size_t count(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) {
        ++n;
    }
    return n;
}

/// A p99 rule over 10 minutes of 1 s ticks: 100ms, then 400ms from minute 4 (pending
/// at 4:00, firing at 6:00 with two hooks), healthy again at 8:00 (resolved).
Timeline incident() {
    TimelineBuilder b("config/examples/router.toml");
    RuleTimeline header;
    header.rule = "router-p99<script>";
    header.severity = "critical";
    header.metric = "p99";
    header.condition = "above 250ms for 2m (window 1m)";
    header.unit = MetricUnit::Seconds;
    const auto r = b.addRule(header);
    RuleTimeline quiet;
    quiet.rule = "router-errors";
    quiet.severity = "warning";
    quiet.metric = "error_ratio";
    quiet.condition = "above 5% (window 1m)";
    quiet.unit = MetricUnit::Ratio;
    const auto q = b.addRule(quiet);

    AlertState state = AlertState::Inactive;
    for (int s = 0; s < 600; ++s) {
        const TimePoint at = kStart + std::chrono::seconds{s};
        const bool bad = s >= 240 && s < 480;
        const double value = bad ? 0.4 : 0.1;
        AlertState next = state;
        if (s == 240) {
            next = AlertState::Pending;
        } else if (s == 360) {
            next = AlertState::Firing;
        } else if (s == 480) {
            next = AlertState::Resolved;
        } else if (s == 481) {
            next = AlertState::Inactive;
        }
        if (next != state && next != AlertState::Inactive) {
            TimelineEvent e;
            e.at = at;
            e.from = state;
            e.to = next;
            e.value = value;
            e.threshold = 0.25;
            e.samples = 1000 + s;
            if (next == AlertState::Firing) {
                e.hooks = {"rollback-env", "page"};
            }
            b.addEvent(r, e);
        }
        state = next;
        // A 30 s no-data gap at the start of minute 9.
        const bool gap = s >= 540 && s < 570;
        b.addPoint(r, TimelinePoint{at, gap ? std::nullopt : std::optional<double>(value), 0.25, 1000, state, {}, {}});
        b.addPoint(q, TimelinePoint{at, 0.01, 0.05, 1000, AlertState::Inactive, {}, {}});
    }
    return b.take();
}

}  // namespace

TEST_CASE("timeline values are formatted in the metric's unit", "[timeline]") {
    CHECK(formatMetricValue(0.412, MetricUnit::Seconds) == "412ms");
    CHECK(formatMetricValue(0.0531, MetricUnit::Ratio) == "5.31%");
    CHECK(formatMetricValue(12.5, MetricUnit::PerSecond) == "12.5/s");
    CHECK(formatMetricValue(0.42, MetricUnit::Plain) == "0.42");
}

TEST_CASE("the timeline text lists every state change with its hooks", "[timeline]") {
    const std::string text = renderTimelineText(incident());
    CHECK(text.find("rule timeline 2026-11-23T10:00:00.000Z .. 2026-11-23T10:09:59.000Z") == 0);
    CHECK(text.find("2026-11-23T10:04:00.000Z  inactive -> pending  p99=400ms threshold 250ms  1240 samples\n") !=
          std::string::npos);
    CHECK(text.find("2026-11-23T10:06:00.000Z  pending -> firing  p99=400ms threshold 250ms  1360 samples  "
                    "hooks (not run): rollback-env, page\n") != std::string::npos);
    CHECK(text.find("firing -> resolved  p99=100ms") != std::string::npos);
    CHECK(text.find("router-errors (warning): error_ratio above 5% (window 1m)\n    never breached\n") !=
          std::string::npos);
}

TEST_CASE("the timeline JSON carries events and, on request, every point", "[timeline]") {
    const Timeline t = incident();
    JsonWriter with;
    writeTimelineJson(with, t, true);
    JsonWriter without;
    writeTimelineJson(without, t, false);
    CHECK(count(with.str(), "\"state\":") == 1200);
    CHECK(count(without.str(), "\"state\":") == 0);
    CHECK(count(without.str(), "\"to\":") == 3);
    CHECK(without.str().find("\"hooks\":[\"rollback-env\",\"page\"]") != std::string::npos);
    // The gap is null, not zero.
    CHECK(count(with.str(), "\"value\":null") == 30);
}

TEST_CASE("the timeline page is one self-contained HTML document with a chart per rule", "[timeline]") {
    const std::string html = renderTimelineHtml(incident(), 300);
    CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(html.find("</html>") != std::string::npos);
    // Self-contained: no script, no external stylesheet, image or font.
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find("src=") == std::string::npos);
    CHECK(html.find("url(") == std::string::npos);
    CHECK(html.find("<link") == std::string::npos);
    CHECK(count(html, "href=\"#") == 2);
    CHECK(count(html, "href=") == 2);
    // User text is escaped.
    CHECK(html.find("router-p99&lt;script&gt;") != std::string::npos);
    // One chart per rule, each closed.
    CHECK(count(html, "<svg ") == 2);
    CHECK(count(html, "</svg>") == 2);
    // One pending band and one firing band, in the right places: 4:00-6:00 and 6:00-8:00
    // of a 599 s span drawn 1000 px wide from x=64.
    const auto rectOf = [&html](const std::string& cls) {
        // x and width of the first <rect class="cls" ...>.
        const auto at = html.find("<rect class=\"" + cls + "\" x=\"");
        REQUIRE(at != std::string::npos);
        const auto x = at + std::string("<rect class=\"").size() + cls.size() + std::string("\" x=\"").size();
        const auto w = html.find("width=\"", x) + 7;
        return std::pair(std::stod(html.substr(x)), std::stod(html.substr(w)));
    };
    const auto [pending_x, pending_w] = rectOf("pending");
    CHECK(pending_x == Approx(64.0 + 240.0 / 599.0 * 1000.0).margin(0.1));
    CHECK(pending_w == Approx(120.0 / 599.0 * 1000.0).margin(0.2));
    const auto [firing_x, firing_w] = rectOf("firing");
    CHECK(firing_x == Approx(64.0 + 360.0 / 599.0 * 1000.0).margin(0.1));
    CHECK(firing_w == Approx(120.0 / 599.0 * 1000.0).margin(0.2));
    CHECK(count(html, "class=\"pending\"") == 1);
    CHECK(count(html, "class=\"firing\"") == 1);
    // Threshold lines, the hook mark with its label, the events table.
    CHECK(count(html, "<path class=\"threshold\"") == 2);
    CHECK(count(html, "<line class=\"hook\"") == 1);
    CHECK(html.find("hooks: rollback-env, page</text>") != std::string::npos);
    CHECK(html.find("pending &rarr; firing") != std::string::npos);
    // Axis ticks: 10 minutes get a tick every 2 minutes, labelled in UTC.
    CHECK(html.find(">10:02:00</text>") != std::string::npos);
    CHECK(html.find(">10:08:00</text>") != std::string::npos);
    CHECK(html.find(">250ms</text>") == std::string::npos);  // the threshold is a line, not a tick
    CHECK(html.find(">200ms</text>") != std::string::npos);
    CHECK(html.find(">600ms</text>") != std::string::npos);
    CHECK(html.find(">4%</text>") != std::string::npos);
}

TEST_CASE("the timeline page keeps spikes when many points share a column", "[timeline]") {
    TimelineBuilder b("c.toml");
    RuleTimeline h;
    h.rule = "r";
    h.severity = "warning";
    h.metric = "p99";
    h.unit = MetricUnit::Seconds;
    const auto r = b.addRule(h);
    for (int s = 0; s < 10000; ++s) {
        const double v = s == 5003 ? 9.0 : 0.1;  // one spike among 10,000 points
        b.addPoint(r, TimelinePoint{kStart + std::chrono::seconds{s}, v, std::nullopt, 1, AlertState::Inactive, {}, {}});
    }
    const std::string html = renderTimelineHtml(b.timeline(), 100);
    // 100 columns: the envelope has one vertical segment (the spike's column), and the
    // value axis reaches the spike.
    const auto envelope = html.find("<path class=\"envelope\" d=\"");
    REQUIRE(envelope != std::string::npos);
    const auto end = html.find('"', envelope + 26);
    CHECK(count(html.substr(envelope, end - envelope), "V") == 1);
    CHECK(html.find(">10s</text>") != std::string::npos);
    CHECK(html.find("<path class=\"threshold\"") == std::string::npos);
}
