#pragma once

#include <cstdint>

#include "rollguard/rules/rule.h"
#include "rollguard/rules/stats.h"

namespace rollguard::rules {

/// The outcome of a one-sided Mann-Whitney U test "canary is slower than baseline".
struct MannWhitneyResult {
    bool valid = false;        ///< false: an empty side (no buckets) — no data
    std::int64_t n_canary = 0;
    std::int64_t n_baseline = 0;
    double u = 0.0;            ///< U of the canary: pairs (c, b) with c > b, ties count 1/2
    double z = 0.0;            ///< standardised U, tie-corrected, with continuity correction
    double p_value = 1.0;      ///< P(U >= observed | same distribution), normal approximation
    double effect = 0.0;       ///< relative increase: 0.2 = canary 20% slower
    /// True when p < 1 - confidence and effect > max_increase.
    bool fails = false;
};

/// Mann-Whitney U test computed from two latency histograms' buckets, no raw samples:
/// every bucket is a tie group (its values are indistinguishable at the histogram's
/// precision), ranks are mid-ranks of the merged buckets, and the variance uses the tie
/// correction n1*n2/12 * ((N+1) - sum(t^3 - t) / (N(N-1))). One-sided (canary worse),
/// normal approximation with a 0.5 continuity correction; for very small samples the
/// approximation is conservative-ish but not exact, which is why rules also set
/// min_samples. The effect size is the ratio of medians minus 1 (EffectKind::MedianRatio)
/// or the Hodges-Lehmann shift (weighted median of all bucket-pair differences) divided
/// by the baseline median (EffectKind::HodgesLehmann). Pure.
MannWhitneyResult mannWhitney(const LatencyView& canary, const LatencyView& baseline, const CompareSpec& spec);

}  // namespace rollguard::rules
