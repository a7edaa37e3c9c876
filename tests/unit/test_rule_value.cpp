// What a rule's value is, in text and JSON: an absolute metric value, a value against a
// baseline, or a Mann-Whitney comparison's effect size (issue #21, part 5).

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>

#include "rollguard/agent/hooks.h"
#include "rollguard/agent/incidents.h"
#include "rollguard/agent/json_writer.h"
#include "rollguard/agent/rule_value.h"
#include "rollguard/agent/timeline.h"

using rollguard::agent::BreachEvent;
using rollguard::agent::breachToJson;
using rollguard::agent::describeRuleValue;
using rollguard::agent::formatChange;
using rollguard::agent::formatFactor;
using rollguard::agent::formatMetricValue;
using rollguard::agent::formatPValue;
using rollguard::agent::formatRuleValue;
using rollguard::agent::incidentFromJson;
using rollguard::agent::IncidentRecord;
using rollguard::agent::incidentToJson;
using rollguard::agent::JsonWriter;
using rollguard::agent::MetricUnit;
using rollguard::agent::renderTimelineHtml;
using rollguard::agent::renderTimelineText;
using rollguard::agent::RuleTimeline;
using rollguard::agent::TimelineBuilder;
using rollguard::agent::TimelineEvent;
using rollguard::agent::TimelinePoint;
using rollguard::agent::ValueKind;
using rollguard::agent::ValueReading;
using rollguard::agent::valueShapeOf;
using rollguard::agent::writeTimelineJson;
using rollguard::agent::writeValueFields;
using rollguard::rules::AlertState;
using rollguard::rules::BaselineKind;
using rollguard::rules::CompareKind;
using rollguard::rules::MannWhitneyResult;
using rollguard::rules::MetricKind;
using rollguard::rules::RuleSpec;
using rollguard::rules::ThresholdKind;
using rollguard::rules::TimePoint;

namespace {

RuleSpec p99Rule() {
    RuleSpec r;
    r.name = "canary-p99";
    r.metric.kind = MetricKind::Quantile;
    r.metric.quantile = 0.99;
    r.metric.text = "p99";
    r.threshold = 0.25;
    return r;
}

RuleSpec factorRule() {
    RuleSpec r = p99Rule();
    r.threshold = 2.0;
    r.threshold_kind = ThresholdKind::Factor;
    r.baseline.kind = BaselineKind::Selection;
    return r;
}

RuleSpec percentRule() {
    RuleSpec r = p99Rule();
    r.threshold = 0.10;
    r.threshold_kind = ThresholdKind::Percent;
    r.baseline.kind = BaselineKind::File;
    return r;
}

RuleSpec compareRule() {
    RuleSpec r = p99Rule();
    r.metric.kind = MetricKind::Quantile;
    r.metric.quantile = 0.5;
    r.metric.text = "p50";
    r.baseline.kind = BaselineKind::Selection;
    r.compare.kind = CompareKind::MannWhitney;
    r.compare.confidence = 0.98;
    r.compare.max_increase = 0.10;
    return r;
}

MannWhitneyResult slowerCanary() {
    MannWhitneyResult mw;
    mw.valid = true;
    mw.n_canary = 1200;
    mw.n_baseline = 1180;
    mw.u = 812345.5;
    mw.z = 3.32;
    mw.p_value = 4.5e-4;
    mw.effect = 0.133;
    mw.fails = true;
    return mw;
}

std::string fieldsOf(const ValueReading& reading) {
    JsonWriter w;
    w.beginObject();
    writeValueFields(w, reading);
    w.endObject();
    return w.str();
}

}  // namespace

TEST_CASE("rule values: changes, factors and p-values in short form", "[rule_value]") {
    CHECK(formatChange(0.133) == "+13.3%");
    CHECK(formatChange(-0.04) == "-4.0%");
    CHECK(formatChange(2.5) == "+250.0%");
    CHECK(formatChange(-0.0001) == "+0.0%");  // never "-0.0%"
    CHECK(formatMetricValue(0.133, MetricUnit::Change) == "+13.3%");
    CHECK(formatFactor(2.1) == "2.10x");
    CHECK(formatFactor(0.5) == "0.50x");
    CHECK(formatPValue(4.5e-4) == "4.5e-4");
    CHECK(formatPValue(4.54e-4) == "4.5e-4");
    CHECK(formatPValue(9.96e-5) == "1e-4");  // the mantissa rounds up to 10
    CHECK(formatPValue(1.2e-12) == "1.2e-12");
    CHECK(formatPValue(0.0312) == "0.031");
    CHECK(formatPValue(0.001) == "0.001");
    CHECK(formatPValue(0.5) == "0.5");
    CHECK(formatPValue(1.0) == "1");
    CHECK(formatPValue(0.0) == "0");
}

TEST_CASE("rule values: an absolute threshold keeps the metric's unit", "[rule_value]") {
    const auto shape = valueShapeOf(p99Rule());
    CHECK(shape.kind == ValueKind::Absolute);
    CHECK(describeRuleValue(shape, ValueReading{0.412, 0.25, std::nullopt, std::nullopt}) ==
          "p99=412ms threshold 250ms");
    CHECK(describeRuleValue(shape, ValueReading{std::nullopt, 0.25, std::nullopt, std::nullopt}) ==
          "p99=no data threshold 250ms");
    CHECK(fieldsOf(ValueReading{0.412, 0.25, std::nullopt, std::nullopt}) == "{}");
}

TEST_CASE("rule values: a baseline-relative value shows value, baseline, ratio and threshold", "[rule_value]") {
    const auto factor = valueShapeOf(factorRule());
    CHECK(factor.kind == ValueKind::Baseline);
    CHECK(describeRuleValue(factor, ValueReading{0.42, 0.4, 0.2, std::nullopt}) ==
          "p99=420ms vs baseline 200ms (2.10x, threshold 2x)");
    CHECK(formatRuleValue(factor, ValueReading{0.42, 0.4, 0.2, std::nullopt}) == "420ms vs baseline 200ms (2.10x)");
    CHECK(describeRuleValue(factor, ValueReading{0.42, std::nullopt, std::nullopt, std::nullopt}) ==
          "p99=420ms, no baseline yet (threshold 2x)");
    CHECK(describeRuleValue(factor, ValueReading{std::nullopt, 0.4, 0.2, std::nullopt}) ==
          "p99=no data vs baseline 200ms (threshold 2x)");

    // A percentage threshold reads against a change, not a factor.
    const auto percent = valueShapeOf(percentRule());
    CHECK(describeRuleValue(percent, ValueReading{0.23, 0.22, 0.2, std::nullopt}) ==
          "p99=230ms vs baseline 200ms (+15.0%, threshold +10%)");

    // A baseline of a power of two keeps the ratio exact in binary: 0.525 / 0.25 = 2.1.
    CHECK(fieldsOf(ValueReading{0.525, 0.5, 0.25, std::nullopt}) == R"({"baseline":0.25,"ratio":2.1})");
    CHECK(fieldsOf(ValueReading{std::nullopt, 0.5, 0.25, std::nullopt}) == R"({"baseline":0.25,"ratio":null})");
    CHECK(fieldsOf(ValueReading{0.525, std::nullopt, 0.0, std::nullopt}) == R"({"baseline":0,"ratio":null})");
}

TEST_CASE("rule values: a comparison's effect is a change vs the baseline, with its p-value", "[rule_value]") {
    const auto shape = valueShapeOf(compareRule());
    CHECK(shape.kind == ValueKind::Compare);
    CHECK(shape.unit == MetricUnit::Change);
    const ValueReading reading{0.133, 0.10, std::nullopt, slowerCanary()};
    CHECK(describeRuleValue(shape, reading) == "p50 +13.3% vs baseline, p=4.5e-4 (threshold +10.0%, p < 0.02)");
    CHECK(formatRuleValue(shape, reading) == "+13.3% vs baseline, p=4.5e-4");
    CHECK(describeRuleValue(shape, ValueReading{std::nullopt, 0.10, std::nullopt, std::nullopt}) ==
          "p50 vs baseline: no data (threshold +10.0%, p < 0.02)");
    // Never the metric's unit: 0.133 is not 133ms.
    CHECK(describeRuleValue(shape, reading).find("ms") == std::string::npos);

    CHECK(fieldsOf(reading) ==
          R"({"mann_whitney":{"u":812345.5,"z":3.32,"p_value":0.00045,"n_canary":1200,"n_baseline":1180}})");
}

TEST_CASE("rule values: the replay timeline prints and exports what a value is", "[rule_value][timeline]") {
    const TimePoint at{std::chrono::seconds{1795428000}};
    TimelineBuilder b("canary.toml");
    RuleTimeline cmp;
    cmp.rule = "canary-slower";
    cmp.severity = "critical";
    cmp.metric = "p50";
    cmp.unit = MetricUnit::Change;
    cmp.shape = valueShapeOf(compareRule());
    const auto c = b.addRule(cmp);
    RuleTimeline rel;
    rel.rule = "canary-p99";
    rel.severity = "warning";
    rel.metric = "p99";
    rel.unit = MetricUnit::Seconds;
    rel.shape = valueShapeOf(factorRule());
    const auto r = b.addRule(rel);

    TimelineEvent e;
    e.at = at;
    e.from = AlertState::Inactive;
    e.to = AlertState::Firing;
    e.value = 0.133;
    e.threshold = 0.10;
    e.samples = 1180;
    e.mann_whitney = slowerCanary();
    b.addEvent(c, e);
    b.addPoint(c, TimelinePoint{at, 0.133, 0.10, 1180, AlertState::Firing, std::nullopt, slowerCanary()});
    TimelineEvent re;
    re.at = at;
    re.from = AlertState::Inactive;
    re.to = AlertState::Firing;
    re.value = 0.525;
    re.threshold = 0.5;
    re.baseline = 0.25;
    re.samples = 300;
    b.addEvent(r, re);
    b.addPoint(r, TimelinePoint{at, 0.525, 0.5, 300, AlertState::Firing, 0.25, std::nullopt});
    const auto timeline = b.take();

    const std::string text = renderTimelineText(timeline);
    CHECK(text.find("inactive -> firing  p50 +13.3% vs baseline, p=4.5e-4 (threshold +10.0%, p < 0.02)  1180 "
                    "samples\n") != std::string::npos);
    CHECK(text.find("inactive -> firing  p99=525ms vs baseline 250ms (2.10x, threshold 2x)  300 samples\n") !=
          std::string::npos);

    JsonWriter json;
    writeTimelineJson(json, timeline, true);
    const std::string mw = R"("mann_whitney":{"u":812345.5,"z":3.32,"p_value":0.00045,"n_canary":1200,"n_baseline":1180})";
    std::size_t n = 0;
    for (auto pos = json.str().find(mw); pos != std::string::npos; pos = json.str().find(mw, pos + 1)) {
        ++n;
    }
    CHECK(n == 2);  // the event and the point
    CHECK(json.str().find(R"("samples":300,"baseline":0.25,"ratio":2.1,"hooks")") != std::string::npos);

    const std::string html = renderTimelineHtml(timeline);
    CHECK(html.find("<td>+13.3% vs baseline, p=4.5e-4</td><td>+10.0%</td>") != std::string::npos);
    CHECK(html.find("<td>525ms vs baseline 250ms (2.10x)</td><td>500ms</td>") != std::string::npos);
    CHECK(html.find("133ms") == std::string::npos);
}

TEST_CASE("rule values: hook bodies and incident records carry the baseline and the test", "[rule_value][hooks]") {
    BreachEvent e;
    e.rule = "canary-slower";
    e.metric = "p50";
    e.value = 0.133;
    e.threshold = 0.10;
    e.mann_whitney = slowerCanary();
    e.value_text = "p50 +13.3% vs baseline, p=4.5e-4 (threshold +10.0%, p < 0.02)";
    const std::string body = breachToJson(e);
    CHECK(body.find(R"("value":0.133,"threshold":0.1,)") != std::string::npos);
    CHECK(body.find(R"("mann_whitney":{"u":812345.5,"z":3.32,"p_value":0.00045,"n_canary":1200,"n_baseline":1180})") !=
          std::string::npos);
    CHECK(body.find("\"baseline\"") == std::string::npos);

    BreachEvent rel;
    rel.rule = "canary-p99";
    rel.value = 0.525;
    rel.threshold = 0.5;
    rel.baseline = 0.25;
    CHECK(breachToJson(rel).find(R"("baseline":0.25,"ratio":2.1)") != std::string::npos);
    CHECK(breachToJson(rel).find("mann_whitney") == std::string::npos);

    IncidentRecord record;
    record.id = "5f0c2a9e41d7b3c8";
    record.kind = "rule";
    record.event = e;
    std::string error;
    const auto back = incidentFromJson(incidentToJson(record), error);
    REQUIRE(back);
    CHECK(error.empty());
    REQUIRE(back->event.mann_whitney);
    CHECK(back->event.mann_whitney->u == 812345.5);
    CHECK(back->event.mann_whitney->z == 3.32);
    CHECK(back->event.mann_whitney->p_value == 4.5e-4);
    CHECK(back->event.mann_whitney->n_canary == 1200);
    CHECK(back->event.mann_whitney->n_baseline == 1180);
    CHECK(back->event.value_text == e.value_text);
    CHECK_FALSE(back->event.baseline);

    record.event = rel;
    const auto back_rel = incidentFromJson(incidentToJson(record), error);
    REQUIRE(back_rel);
    CHECK(back_rel->event.baseline == 0.25);
    CHECK_FALSE(back_rel->event.mann_whitney);
}
