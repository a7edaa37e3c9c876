#include "rollguard/agent/rule_value.h"

#include <cmath>
#include <cstdio>

#include "rollguard/agent/json_writer.h"
#include "rollguard/rules/duration.h"

namespace rollguard::agent {

namespace {

std::string formatNumber(double v, int precision) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    return buf;
}

std::string thresholdAsWritten(const rules::RuleSpec& rule) {
    if (rule.threshold_kind == rules::ThresholdKind::Factor) {
        return formatNumber(rule.threshold, 6) + "x";
    }
    return (rule.threshold >= 0 ? "+" : "") + formatNumber(rule.threshold * 100.0, 6) + "%";
}

}  // namespace

MetricUnit metricUnitOf(const rules::MetricSpec& metric) {
    if (metric.isLatency()) {
        return MetricUnit::Seconds;
    }
    switch (metric.kind) {
        case rules::MetricKind::ErrorRatio:
            return MetricUnit::Ratio;
        case rules::MetricKind::Rate:
            return MetricUnit::PerSecond;
        default:
            return MetricUnit::Plain;
    }
}

MetricUnit valueUnitOf(const rules::RuleSpec& rule) {
    return rule.compare.kind == rules::CompareKind::MannWhitney ? MetricUnit::Change : metricUnitOf(rule.metric);
}

std::string formatMetricValue(double value, MetricUnit unit) {
    if (!std::isfinite(value)) {
        return formatNumber(value, 4);
    }
    switch (unit) {
        case MetricUnit::Seconds:
            return rules::formatSeconds(value);
        case MetricUnit::Ratio:
            return formatNumber(value * 100.0, 4) + "%";
        case MetricUnit::PerSecond:
            return formatNumber(value, 4) + "/s";
        case MetricUnit::Change:
            return formatChange(value);
        case MetricUnit::Plain:
            break;
    }
    return formatNumber(value, 6);
}

ValueShape valueShapeOf(const rules::RuleSpec& rule) {
    ValueShape shape;
    shape.metric = rule.metric.text;
    shape.unit = valueUnitOf(rule);
    if (rule.compare.kind == rules::CompareKind::MannWhitney) {
        shape.kind = ValueKind::Compare;
        shape.limit = formatChange(rule.compare.max_increase) + ", p < " + formatPValue(1.0 - rule.compare.confidence);
    } else if (rule.isRelative()) {
        shape.kind = ValueKind::Baseline;
        shape.limit = thresholdAsWritten(rule);
        shape.ratio_as_change = rule.threshold_kind == rules::ThresholdKind::Percent;
    }
    return shape;
}

std::optional<double> baselineRatio(const ValueReading& reading) {
    if (!reading.value || !reading.baseline || *reading.baseline == 0.0) {
        return std::nullopt;
    }
    return *reading.value / *reading.baseline;
}

std::string formatChange(double change) {
    if (!std::isfinite(change)) {
        return formatNumber(change, 4);
    }
    char buf[64];
    // "-0.0%" would suggest a decrease that is not there.
    const double percent = std::fabs(change) < 0.0005 ? 0.0 : change * 100.0;
    std::snprintf(buf, sizeof buf, "%+.1f%%", percent);
    return buf;
}

std::string formatFactor(double factor) {
    if (!std::isfinite(factor)) {
        return formatNumber(factor, 4) + "x";
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2fx", factor);
    return buf;
}

std::string formatPValue(double p) {
    if (!std::isfinite(p) || p <= 0.0 || p >= 0.001) {
        return formatNumber(p, 2);
    }
    // printf's %e pads the exponent ("4.5e-04"); people write 4.5e-4.
    int exponent = static_cast<int>(std::floor(std::log10(p)));
    double mantissa = p / std::pow(10.0, exponent);
    if (std::stod(formatNumber(mantissa, 2)) >= 10.0) {
        mantissa /= 10.0;
        ++exponent;
    }
    return formatNumber(mantissa, 2) + "e" + std::to_string(exponent);
}

namespace {

/// A baseline rule's value in two parts, so that the ratio can share its parenthesis
/// with the threshold: "420ms vs baseline 200ms" and "2.10x".
struct BaselineParts {
    std::string main;
    std::string ratio;  ///< empty when there is no ratio
};

BaselineParts baselineParts(const ValueShape& shape, const ValueReading& reading) {
    BaselineParts parts;
    parts.main = reading.value ? formatMetricValue(*reading.value, shape.unit) : std::string("no data");
    if (!reading.baseline) {
        parts.main += ", no baseline yet";
        return parts;
    }
    parts.main += " vs baseline " + formatMetricValue(*reading.baseline, shape.unit);
    if (const auto ratio = baselineRatio(reading)) {
        parts.ratio = shape.ratio_as_change ? formatChange(*ratio - 1.0) : formatFactor(*ratio);
    }
    return parts;
}

std::string compareValue(const ValueReading& reading) {
    if (!reading.value) {
        return "vs baseline: no data";
    }
    std::string out = formatChange(*reading.value) + " vs baseline";
    if (reading.mann_whitney) {
        out += ", p=" + formatPValue(reading.mann_whitney->p_value);
    }
    return out;
}

}  // namespace

std::string formatRuleValue(const ValueShape& shape, const ValueReading& reading) {
    switch (shape.kind) {
        case ValueKind::Absolute:
            break;
        case ValueKind::Baseline: {
            const BaselineParts parts = baselineParts(shape, reading);
            return parts.ratio.empty() ? parts.main : parts.main + " (" + parts.ratio + ")";
        }
        case ValueKind::Compare:
            return compareValue(reading);
    }
    return reading.value ? formatMetricValue(*reading.value, shape.unit) : std::string("no data");
}

std::string describeRuleValue(const ValueShape& shape, const ValueReading& reading) {
    switch (shape.kind) {
        case ValueKind::Absolute:
            break;
        case ValueKind::Baseline: {
            const BaselineParts parts = baselineParts(shape, reading);
            return shape.metric + "=" + parts.main + " (" + (parts.ratio.empty() ? "" : parts.ratio + ", ") +
                   "threshold " + shape.limit + ")";
        }
        case ValueKind::Compare:
            return shape.metric + " " + compareValue(reading) + " (threshold " + shape.limit + ")";
    }
    std::string out = shape.metric + "=" + formatRuleValue(shape, reading);
    if (reading.threshold) {
        out += " threshold " + formatMetricValue(*reading.threshold, shape.unit);
    }
    return out;
}

void writeValueFields(JsonWriter& out, const ValueReading& reading) {
    if (reading.baseline) {
        out.key("baseline").value(*reading.baseline);
        out.key("ratio");
        if (const auto ratio = baselineRatio(reading)) {
            out.value(*ratio);
        } else {
            out.null();
        }
    }
    if (reading.mann_whitney) {
        const auto& mw = *reading.mann_whitney;
        out.key("mann_whitney").beginObject();
        out.key("u").value(mw.u);
        out.key("z").value(mw.z);
        out.key("p_value").value(mw.p_value);
        out.key("n_canary").value(mw.n_canary);
        out.key("n_baseline").value(mw.n_baseline);
        out.endObject();
    }
}

}  // namespace rollguard::agent
