// Fuzz target: the Prometheus text / OpenMetrics parser (parseExposition,
// agent/src/scrape/exposition.cpp) and histogramQuantile over what it parsed.
// Input: bit 0 of the first byte picks the format (0: Prometheus text 0.0.4, 1:
// OpenMetrics 1.0), the rest is the body. Checks: no crash (ASan/UBSan); the
// all-or-nothing contract (ok: no error; not ok: exactly one error with line and column
// >= 1, no families or samples); every sample points at its family and the family lists
// it; family() finds every family; for every histogram series, histogramQuantile at
// q = 0, 0.25, 0.5, 0.9, 0.99, 1 is NaN or inside [min(0, lowest bound), highest finite
// bound] when every count is finite and >= 0, and does not decrease with q.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_common.h"
#include "rollguard/agent/exposition.h"

using namespace rollguard::agent;
using rollguard::fuzz::check;

namespace {

void checkHistograms(const ParseResult& r) {
    for (const auto& family : r.families) {
        if (family.type != MetricType::Histogram && family.type != MetricType::GaugeHistogram) {
            continue;
        }
        // series (labels without le) -> (le, count)
        std::map<std::vector<std::pair<std::string, std::string>>, std::vector<std::pair<double, double>>> series;
        for (const auto index : family.samples) {
            const Sample& s = r.samples[index];
            if (s.name.size() < 7 || s.name.substr(s.name.size() - 7) != "_bucket") {
                continue;
            }
            const std::string* le = s.label("le");
            check(le != nullptr, "a histogram bucket without le was accepted");
            std::vector<std::pair<std::string, std::string>> key;
            for (const auto& l : s.labels) {
                if (l.name != "le") {
                    key.emplace_back(l.name, l.value);
                }
            }
            series[key].emplace_back(std::strtod(le->c_str(), nullptr), s.value);
        }
        for (const auto& [key, buckets] : series) {
            bool sane = true;
            double lowest = INFINITY;  // over every bound, -Inf included
            double highest_finite = -INFINITY;
            for (const auto& [le, count] : buckets) {
                sane = sane && std::isfinite(count) && count >= 0.0 && !std::isnan(le);
                if (!std::isnan(le)) {
                    lowest = std::min(lowest, le);
                }
                if (std::isfinite(le)) {
                    highest_finite = std::max(highest_finite, le);
                }
            }
            double previous = -INFINITY;
            for (const double q : {0.0, 0.25, 0.5, 0.9, 0.99, 1.0}) {
                const double v = histogramQuantile(q, buckets);
                if (!sane || std::isnan(v)) {
                    continue;
                }
                check(v >= std::min(0.0, lowest) && v <= highest_finite,
                      "histogramQuantile outside [min(0, lowest bound), highest finite bound]");
                check(v >= previous, "histogramQuantile decreases with q");
                previous = v;
            }
            check(histogramQuantile(-0.5, buckets) == -INFINITY, "q < 0 is not -Inf");
            check(histogramQuantile(1.5, buckets) == INFINITY, "q > 1 is not +Inf");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const ExpositionFormat format = (data[0] & 1) != 0 ? ExpositionFormat::OpenMetrics : ExpositionFormat::PrometheusText;
    const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
    const ParseResult r = parseExposition(body, format);
    if (!r.ok) {
        check(r.errors.size() == 1, "a failed parse without exactly one error");
        check(r.families.empty() && r.samples.empty(), "a failed parse kept families or samples");
        check(r.errors[0].line >= 1 && r.errors[0].column >= 1, "an error without line and column");
        check(!r.errors[0].message().empty(), "an empty error message");
        return 0;
    }
    check(r.errors.empty(), "a successful parse with errors");
    for (std::size_t i = 0; i < r.samples.size(); ++i) {
        const Sample& s = r.samples[i];
        check(s.family < r.families.size(), "a sample's family index is out of range");
        const auto& members = r.families[s.family].samples;
        check(std::find(members.begin(), members.end(), i) != members.end(), "a family does not list its sample");
        check(s.exemplar == kNoExemplar || s.exemplar < r.exemplars.size(), "an exemplar index out of range");
        for (std::size_t j = 1; j < s.labels.size(); ++j) {
            check(s.labels[j - 1].name < s.labels[j].name, "labels not sorted by name or not unique");
        }
    }
    for (const auto& family : r.families) {
        check(r.family(family.name) == &family, "family() does not find a family");
    }
    checkHistograms(r);
    return 0;
}
