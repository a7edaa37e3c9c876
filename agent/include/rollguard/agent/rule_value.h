#pragma once

#include <optional>
#include <string>

#include "rollguard/rules/compare.h"
#include "rollguard/rules/rule.h"

namespace rollguard::agent {

class JsonWriter;

/// How a rule's metric is shown: latencies in seconds (drawn in ms or s), ratios as
/// percentages, a comparison's effect size as a signed change ("+13.3%"), the rest as
/// plain numbers.
enum class MetricUnit { Seconds, Ratio, PerSecond, Plain, Change };

/// The metric's unit for display, from the rule's metric.
MetricUnit metricUnitOf(const rules::MetricSpec& metric);

/// The unit of a rule's value: metricUnitOf(rule.metric), except for a compare rule,
/// whose value is the effect size whatever its metric.
MetricUnit valueUnitOf(const rules::RuleSpec& rule);

/// Formats a metric value for people: "182ms", "5.3%", "12.5/s", "0.42", "+13.3%".
std::string formatMetricValue(double value, MetricUnit unit);

/// What a rule's value is: the metric itself against an absolute threshold, the metric
/// against a baseline (`above = "2x"`, `"+10%"`), or the effect size of a canary
/// comparison (`compare = "mann_whitney"`), which is not in the metric's unit at all.
enum class ValueKind { Absolute, Baseline, Compare };

/// Everything needed to print one rule's values, taken from its spec once.
struct ValueShape {
    std::string metric;  ///< as written, e.g. "p99"
    MetricUnit unit = MetricUnit::Plain;
    ValueKind kind = ValueKind::Absolute;
    /// Baseline: the threshold as written ("2x", "+10%"); Compare: the effect limit and
    /// the significance level ("+10%, p < 0.02"). Empty for Absolute.
    std::string limit;
    /// Baseline only: the ratio is shown as a change ("+15.0%") when the threshold is
    /// one, as a factor ("2.10x") otherwise, so that it reads like the threshold.
    bool ratio_as_change = false;
};
ValueShape valueShapeOf(const rules::RuleSpec& rule);

/// One evaluation's figures, as the engine reports them.
struct ValueReading {
    std::optional<double> value;      ///< the metric, or a compare rule's effect size
    std::optional<double> threshold;  ///< the effective threshold
    std::optional<double> baseline;   ///< a relative threshold's baseline
    std::optional<rules::MannWhitneyResult> mann_whitney;
};

/// value / baseline, when both are known and the baseline is not 0.
std::optional<double> baselineRatio(const ValueReading& reading);

/// A relative change as a signed percentage with one decimal: 0.133 -> "+13.3%".
std::string formatChange(double change);
/// A factor with two decimals: 2.1 -> "2.10x".
std::string formatFactor(double factor);
/// A p-value in short form: two significant digits, in scientific notation below 0.001
/// ("4.5e-4"), plain above ("0.031", "0.5").
std::string formatPValue(double p);

/// The value alone: "412ms", "420ms vs baseline 200ms (2.10x)",
/// "+13.3% vs baseline, p=4.5e-4", "no data".
std::string formatRuleValue(const ValueShape& shape, const ValueReading& reading);

/// The value with what it is measured against, as every text output prints it:
///   Absolute: "p99=412ms threshold 250ms"
///   Baseline: "p99=420ms vs baseline 200ms (2.10x, threshold 2x)",
///             "p99=420ms, no baseline yet (threshold 2x)"
///   Compare:  "p50 +13.3% vs baseline, p=4.5e-4 (threshold +10%, p < 0.02)",
///             "p50 vs baseline: no data (threshold +10%, p < 0.02)"
std::string describeRuleValue(const ValueShape& shape, const ValueReading& reading);

/// Writes the fields that say what a value is, each only when known: `baseline` and
/// `ratio` (value / baseline) for a baseline-relative rule, and for a compare rule
/// `mann_whitney: {u, z, p_value, n_canary, n_baseline}`. Call inside an object.
void writeValueFields(JsonWriter& out, const ValueReading& reading);

}  // namespace rollguard::agent
