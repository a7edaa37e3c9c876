#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "rollguard/rules/diagnostics.h"
#include "rollguard/rules/selection.h"

namespace rollguard::rules {

enum class Severity { Critical, Warning };

enum class MetricKind {
    Count,       ///< events in the window
    Rate,        ///< events per second over the window
    ErrorRatio,  ///< error events / events, 0..1
    Quantile,    ///< latency quantile in seconds (p50, p99, p99.9, ...)
    Mean,        ///< mean latency in seconds
    Min,         ///< minimum latency in seconds
    Max,         ///< maximum latency in seconds
    Stddev,      ///< standard deviation of latency in seconds
    Value,       ///< a gauge: the last value in the window (scraped series)
    Increase,    ///< sum of per-interval counter increases in the window (scraped series)
    Growth,      ///< relative change per hour: least-squares slope / mean of the window's points
    Ratio,       ///< operands[0] / operands[1], both over the same selection and window
};

/// What a rule measures. `quantile` is used by MetricKind::Quantile only (0 < q < 1).
/// `Rate` is events per second, or, on a series that carries values (a scraped counter's
/// per-interval increases), the value sum per second.
struct MetricSpec {
    MetricKind kind = MetricKind::ErrorRatio;
    double quantile = 0.0;
    std::string text;  ///< as written, e.g. "p99"; used in messages
    /// Ratio only: numerator and denominator (never themselves ratios).
    std::vector<MetricSpec> operands{};

    /// Latency metrics are in seconds and need a source with a latency field.
    bool isLatency() const {
        return kind == MetricKind::Quantile || kind == MetricKind::Mean || kind == MetricKind::Min ||
               kind == MetricKind::Max || kind == MetricKind::Stddev;
    }
    /// True when this metric or one of its operands reads latency.
    bool needsLatency() const {
        if (isLatency()) {
            return true;
        }
        for (const auto& o : operands) {
            if (o.needsLatency()) {
                return true;
            }
        }
        return false;
    }
    /// Metrics over a series' values (gauges and counters) rather than its events.
    bool isValue() const {
        return kind == MetricKind::Value || kind == MetricKind::Increase || kind == MetricKind::Growth;
    }
};

enum class Comparison { Above, Below };

/// How `threshold` is read: an absolute value, or relative to the rule's baseline as a
/// factor (`above = "2x"`: threshold = 2, effective = 2 * baseline) or a percentage
/// (`above = "+10%"`: threshold = 0.10, effective = baseline * (1 + 0.10)).
enum class ThresholdKind { Absolute, Factor, Percent };

/// What a relative threshold (or a comparison) is relative to.
///  - Selection: the same metric over a second selection (e.g. variant = "stable"),
///    same source and window; the agent passes its stats as EvalInput::baseline.
///  - Learned: the metric averaged over the evaluations of the first `learn` after start
///    (after `delay`), then frozen (and persisted). Until frozen the rule has no data.
///  - File: a number the agent reads from `file` at `pointer` (a JSON pointer) and passes
///    as EvalInput::baseline_value. The engine does no I/O.
enum class BaselineKind { None, Selection, Learned, File };

struct BaselineSpec {
    BaselineKind kind = BaselineKind::None;
    Selection selection;
    std::chrono::nanoseconds learn{0};
    std::string file;
    std::string pointer;
};

/// A statistical canary-vs-baseline comparison instead of a threshold.
enum class CompareKind { None, MannWhitney };
/// The effect size of a comparison: ratio of medians (canary / baseline - 1), or the
/// Hodges-Lehmann shift (median of pairwise differences) relative to the baseline median.
enum class EffectKind { MedianRatio, HodgesLehmann };

struct CompareSpec {
    CompareKind kind = CompareKind::None;
    double confidence = 0.98;    ///< fails only when p < 1 - confidence
    double max_increase = 0.10;  ///< ...and the effect exceeds this (+10%)
    EffectKind effect = EffectKind::MedianRatio;
};

/// What an evaluation does when it has no data / when fetching its input failed.
///  - Ok: counts as healthy (a pending rule resets, a firing rule may resolve);
///  - Breach: counts as a breach;
///  - Hold: keeps the current state and does not advance `for` / `keep_firing_for` timers
///    nor the M-of-N history.
enum class GapPolicy { Ok, Breach, Hold };

/// One rule from the config, fully typed and validated.
struct RuleSpec {
    std::string name;
    Severity severity = Severity::Critical;
    std::string source;  ///< name of the source the rule reads
    MetricSpec metric;
    Comparison comparison = Comparison::Above;
    double threshold = 0.0;  ///< in the metric's unit (seconds for latency metrics)
    std::chrono::nanoseconds window{std::chrono::minutes{5}};
    std::chrono::nanoseconds for_{0};  ///< sustained-breach time before firing
    std::int64_t min_samples = 1;      ///< fewer samples in the window count as "no data"
    std::vector<std::string> hooks;    ///< hook names run when the rule fires
    /// The hooks a critical rule's resolve runs: those of `hooks` that notify (the
    /// agent's `alertmanager` and `webhook` hooks), in `hooks` order, never the rollback
    /// actions (env/flag file edits, scripts), which must not run again on resolve.
    /// rules/ knows no hook types: the agent's config loader fills this list (a RuleSpec
    /// built by hand has none, so its critical resolve runs nothing). A warning's resolve
    /// runs `hooks`, as its fire does.
    std::vector<std::string> resolve_hooks;
    std::string description;
    SourceLocation location;  ///< where the [[rule]] table starts

    // --- added with issue #5; defaults keep the behaviour of the fields above ---
    ThresholdKind threshold_kind = ThresholdKind::Absolute;
    Selection selection{};     ///< label filters and grouping
    BaselineSpec baseline{};
    CompareSpec compare{};
    /// M-of-N: fires when at least `breaches_m` of the last `breaches_n` evaluations
    /// breached (used instead of `for` when breaches_n > 0).
    int breaches_m = 0;
    int breaches_n = 0;
    std::chrono::nanoseconds keep_firing_for{0};  ///< healthy this long before resolving
    GapPolicy no_data = GapPolicy::Ok;
    GapPolicy on_error = GapPolicy::Hold;
    std::int64_t error_budget = 0;  ///< consecutive fetch errors held before on_error applies
    std::chrono::nanoseconds delay{0};  ///< after start, evaluations count as healthy
    std::chrono::nanoseconds repeat_interval{std::chrono::hours{4}};  ///< warnings only
    bool dry_run = false;  ///< evaluate and report, never run hooks

    bool isRelative() const { return threshold_kind != ThresholdKind::Absolute; }

    /// True when `value` breaches the threshold (strictly above / strictly below).
    bool breaches(double value) const { return breaches(value, threshold); }
    bool breaches(double value, double effective_threshold) const {
        return comparison == Comparison::Above ? value > effective_threshold : value < effective_threshold;
    }
    /// The threshold in the metric's unit given a baseline value (ignored when absolute).
    double effectiveThreshold(double baseline_value) const {
        switch (threshold_kind) {
            case ThresholdKind::Factor:
                return baseline_value * threshold;
            case ThresholdKind::Percent:
                return baseline_value * (1.0 + threshold);
            case ThresholdKind::Absolute:
                break;
        }
        return threshold;
    }

    /// A stable hash of everything that defines the rule's judgement (not its
    /// description or hooks): persisted state is dropped when it changes.
    std::uint64_t specHash() const;
};

const char* toString(Severity s);
const char* toString(Comparison c);
const char* toString(GapPolicy p);

}  // namespace rollguard::rules
