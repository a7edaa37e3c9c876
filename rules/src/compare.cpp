#include "rollguard/rules/compare.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace rollguard::rules {

namespace {

using Buckets = std::vector<std::pair<double, std::int64_t>>;

Buckets bucketsOf(const LatencyView& view, std::int64_t& total) {
    Buckets out;
    total = 0;
    view.forEachBucket([&](double v, std::int64_t c) {
        if (c > 0 && std::isfinite(v)) {
            out.emplace_back(v, c);
            total += c;
        }
    });
    // Views promise ascending order; sorting again costs little and protects the ranks.
    std::sort(out.begin(), out.end());
    return out;
}

/// The value at the middle rank of a bucket list (lower median for even counts).
double medianOf(const Buckets& b, std::int64_t total) {
    const std::int64_t target = (total + 1) / 2;
    std::int64_t seen = 0;
    for (const auto& [v, c] : b) {
        seen += c;
        if (seen >= target) {
            return v;
        }
    }
    return b.empty() ? 0.0 : b.back().first;
}

/// Weighted median of canary - baseline over every bucket pair (count_c * count_b pairs
/// each), without materialising the pairs: bisection on the shift d, where the weight of
/// pairs with a difference <= d is counted in one merge pass over the two sorted lists.
double hodgesLehmannShift(const Buckets& canary, const Buckets& baseline) {
    std::vector<double> suffix(baseline.size() + 1, 0.0);  // weight of baseline[j..]
    for (std::size_t j = baseline.size(); j-- > 0;) {
        suffix[j] = suffix[j + 1] + static_cast<double>(baseline[j].second);
    }
    double total = 0.0;
    for (const auto& [v, c] : canary) {
        total += static_cast<double>(c) * suffix[0];
    }
    const auto weightAtMost = [&](double d) {
        double w = 0.0;
        std::size_t j = 0;
        for (const auto& [vc, cc] : canary) {
            // vc - vb <= d  <=>  vb >= vc - d; the bound grows with vc.
            while (j < baseline.size() && baseline[j].first < vc - d) {
                ++j;
            }
            w += static_cast<double>(cc) * suffix[j];
        }
        return w;
    };
    double lo = canary.front().first - baseline.back().first;
    double hi = canary.back().first - baseline.front().first;
    if (weightAtMost(lo) >= total / 2.0) {
        return lo;
    }
    // Invariant: weight(lo) < total/2 <= weight(hi). 200 halvings reach the double's
    // resolution for any latency range.
    for (int i = 0; i < 200 && lo < hi; ++i) {
        const double mid = lo + (hi - lo) / 2.0;
        if (mid <= lo || mid >= hi) {
            break;
        }
        if (weightAtMost(mid) >= total / 2.0) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    return hi;
}

}  // namespace

MannWhitneyResult mannWhitney(const LatencyView& canary, const LatencyView& baseline, const CompareSpec& spec) {
    MannWhitneyResult r;
    std::int64_t n1 = 0;
    std::int64_t n2 = 0;
    const Buckets a = bucketsOf(canary, n1);
    const Buckets b = bucketsOf(baseline, n2);
    r.n_canary = n1;
    r.n_baseline = n2;
    if (n1 == 0 || n2 == 0) {
        return r;
    }
    r.valid = true;

    // Merge the two bucket lists; each distinct value is one tie group.
    const double dn1 = static_cast<double>(n1);
    const double dn2 = static_cast<double>(n2);
    const double n = dn1 + dn2;
    double rank_sum = 0.0;
    double tie_sum = 0.0;
    double below = 0.0;
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < a.size() || j < b.size()) {
        double v = 0.0;
        if (j >= b.size() || (i < a.size() && a[i].first <= b[j].first)) {
            v = a[i].first;
        } else {
            v = b[j].first;
        }
        double ca = 0.0;
        double cb = 0.0;
        if (i < a.size() && a[i].first == v) {
            ca = static_cast<double>(a[i].second);
            ++i;
        }
        if (j < b.size() && b[j].first == v) {
            cb = static_cast<double>(b[j].second);
            ++j;
        }
        const double t = ca + cb;
        const double mid_rank = below + (t + 1.0) / 2.0;
        rank_sum += ca * mid_rank;
        tie_sum += t * t * t - t;
        below += t;
    }
    r.u = rank_sum - dn1 * (dn1 + 1.0) / 2.0;
    const double mean = dn1 * dn2 / 2.0;
    const double variance = n > 1.0 ? dn1 * dn2 / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0))) : 0.0;
    if (variance > 0.0) {
        // Continuity correction toward the mean: never overstates significance.
        r.z = (r.u - mean - 0.5) / std::sqrt(variance);
        r.p_value = 0.5 * std::erfc(r.z / std::sqrt(2.0));
    } else {
        // Everything in one tie group: no evidence either way.
        r.z = 0.0;
        r.p_value = 1.0;
    }

    const double base_median = medianOf(b, n2);
    if (spec.effect == EffectKind::HodgesLehmann) {
        const double shift = hodgesLehmannShift(a, b);
        r.effect = base_median > 0.0 ? shift / base_median : 0.0;
    } else {
        const double can_median = medianOf(a, n1);
        r.effect = base_median > 0.0 ? can_median / base_median - 1.0 : 0.0;
    }
    r.fails = r.p_value < 1.0 - spec.confidence && r.effect > spec.max_increase;
    return r;
}

}  // namespace rollguard::rules
