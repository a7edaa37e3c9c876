#include "rollguard/rules/diagnostics.h"
#include "rollguard/rules/rule.h"

#include <cstring>

namespace rollguard::rules {

const char* toString(Severity s) {
    return s == Severity::Critical ? "critical" : "warning";
}

const char* toString(Comparison c) {
    return c == Comparison::Above ? "above" : "below";
}

const char* toString(GapPolicy p) {
    switch (p) {
        case GapPolicy::Ok:
            return "ok";
        case GapPolicy::Breach:
            return "breach";
        case GapPolicy::Hold:
            return "hold";
    }
    return "unknown";
}

namespace {

/// FNV-1a, 64 bit: stable across runs and builds (std::hash is not).
class Hasher {
public:
    void bytes(const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) {
            h_ = (h_ ^ b[i]) * 1099511628211ULL;
        }
    }
    void str(const std::string& s) {
        u64(s.size());
        bytes(s.data(), s.size());
    }
    void u64(std::uint64_t v) { bytes(&v, sizeof v); }
    void i64(std::int64_t v) { bytes(&v, sizeof v); }
    void f64(double v) {
        std::uint64_t bits = 0;
        std::memcpy(&bits, &v, sizeof bits);
        u64(bits);
    }
    void metric(const MetricSpec& m) {
        i64(static_cast<std::int64_t>(m.kind));
        f64(m.quantile);
        u64(m.operands.size());
        for (const auto& o : m.operands) {
            metric(o);
        }
    }
    void selection(const Selection& s) {
        u64(s.matchers.size());
        for (const auto& m : s.matchers) {
            str(m.label);
            i64(static_cast<std::int64_t>(m.op));
            str(m.value);
        }
        u64(s.group_by.size());
        for (const auto& g : s.group_by) {
            str(g);
        }
        u64(s.max_groups);
    }
    std::uint64_t value() const { return h_; }

private:
    std::uint64_t h_ = 1469598103934665603ULL;
};

}  // namespace

std::uint64_t RuleSpec::specHash() const {
    Hasher h;
    h.str(name);
    h.i64(static_cast<std::int64_t>(severity));
    h.str(source);
    h.metric(metric);
    h.i64(static_cast<std::int64_t>(comparison));
    h.f64(threshold);
    h.i64(static_cast<std::int64_t>(threshold_kind));
    h.i64(window.count());
    h.i64(for_.count());
    h.i64(min_samples);
    h.selection(selection);
    h.i64(static_cast<std::int64_t>(baseline.kind));
    h.selection(baseline.selection);
    h.i64(baseline.learn.count());
    h.str(baseline.file);
    h.str(baseline.pointer);
    h.i64(static_cast<std::int64_t>(compare.kind));
    h.f64(compare.confidence);
    h.f64(compare.max_increase);
    h.i64(static_cast<std::int64_t>(compare.effect));
    h.i64(breaches_m);
    h.i64(breaches_n);
    h.i64(keep_firing_for.count());
    h.i64(static_cast<std::int64_t>(no_data));
    h.i64(static_cast<std::int64_t>(on_error));
    h.i64(error_budget);
    h.i64(delay.count());
    return h.value();
}

std::string Diagnostic::format() const {
    std::string out = where.file.empty() ? std::string("<config>") : where.file;
    if (where.line > 0) {
        out += ":" + std::to_string(where.line);
        if (where.column > 0) {
            out += ":" + std::to_string(where.column);
        }
    }
    out += level == Level::Error ? ": error: " : ": warning: ";
    out += message;
    return out;
}

}  // namespace rollguard::rules
