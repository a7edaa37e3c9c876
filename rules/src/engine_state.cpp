// Engine::saveState / restoreState: the persistent part of the engine's state as a
// little-endian binary blob: "RGRS", a version byte, the start time, then per rule its
// name, spec hash and groups, and an FNV-1a checksum of everything before it.
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "rollguard/rules/engine.h"

namespace rollguard::rules {

namespace {

constexpr std::string_view kMagic = "RGRS";
constexpr unsigned char kVersion = 1;
// Corrupt lengths must not make restore allocate or loop for long.
constexpr std::uint64_t kMaxCount = 1'000'000;

std::uint64_t fnv(std::string_view data) {
    std::uint64_t h = 1469598103934665603ULL;
    for (const char c : data) {
        h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    }
    return h;
}

class Writer {
public:
    void u8(unsigned char v) { out_.push_back(static_cast<char>(v)); }
    void u64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) {
            out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
        }
    }
    void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
    void f64(double v) {
        std::uint64_t bits = 0;
        std::memcpy(&bits, &v, sizeof bits);
        u64(bits);
    }
    void str(const std::string& s) {
        u64(s.size());
        out_ += s;
    }
    void time(const std::optional<TimePoint>& t) {
        u8(t ? 1 : 0);
        if (t) {
            i64(std::chrono::duration_cast<std::chrono::nanoseconds>(t->time_since_epoch()).count());
        }
    }
    void optDouble(const std::optional<double>& v) {
        u8(v ? 1 : 0);
        if (v) {
            f64(*v);
        }
    }
    std::string& data() { return out_; }

private:
    std::string out_;
};

class Reader {
public:
    explicit Reader(std::string_view in) : in_(in) {}
    bool u8(unsigned char& v) {
        if (pos_ >= in_.size()) {
            return false;
        }
        v = static_cast<unsigned char>(in_[pos_++]);
        return true;
    }
    bool u64(std::uint64_t& v) {
        if (in_.size() - pos_ < 8) {
            return false;
        }
        v = 0;
        for (int i = 0; i < 8; ++i) {
            v |= std::uint64_t{static_cast<unsigned char>(in_[pos_ + static_cast<std::size_t>(i)])} << (8 * i);
        }
        pos_ += 8;
        return true;
    }
    bool i64(std::int64_t& v) {
        std::uint64_t u = 0;
        if (!u64(u)) {
            return false;
        }
        v = static_cast<std::int64_t>(u);
        return true;
    }
    bool f64(double& v) {
        std::uint64_t bits = 0;
        if (!u64(bits)) {
            return false;
        }
        std::memcpy(&v, &bits, sizeof v);
        return true;
    }
    bool str(std::string& s) {
        std::uint64_t n = 0;
        if (!u64(n) || n > in_.size() - pos_) {
            return false;
        }
        s.assign(in_.substr(pos_, n));
        pos_ += n;
        return true;
    }
    bool flag(bool& present) {
        unsigned char f = 0;
        if (!u8(f) || f > 1) {
            return false;
        }
        present = f == 1;
        return true;
    }
    bool time(std::optional<TimePoint>& t) {
        bool present = false;
        if (!flag(present)) {
            return false;
        }
        t.reset();
        if (present) {
            std::int64_t ns = 0;
            if (!i64(ns)) {
                return false;
            }
            t = TimePoint{std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds{ns})};
        }
        return true;
    }
    bool optDouble(std::optional<double>& v) {
        bool present = false;
        if (!flag(present)) {
            return false;
        }
        v.reset();
        if (present) {
            double d = 0.0;
            if (!f64(d)) {
                return false;
            }
            v = d;
        }
        return true;
    }
    bool done() const { return pos_ == in_.size(); }

private:
    std::string_view in_;
    std::size_t pos_ = 0;
};

struct SavedRule {
    std::uint64_t hash = 0;
    std::map<std::string, detail::GroupState> groups;
};

bool readGroup(Reader& r, detail::GroupState& g) {
    unsigned char state = 0;
    std::uint64_t history = 0;
    std::int64_t len = 0;
    bool latched = false;
    bool notified = false;
    if (!r.u8(state) || state > static_cast<unsigned char>(AlertState::Firing) || !r.time(g.since) ||
        !r.time(g.firing_since) || !r.time(g.healthy_since) || !r.u64(history) || !r.i64(len) || len < 0 ||
        len > 64 || !r.i64(g.consecutive_errors) || !r.flag(latched) || !r.flag(notified) ||
        !r.time(g.last_notified) || !r.time(g.last_evaluation) || !r.f64(g.learn_sum) || !r.i64(g.learn_n) ||
        !r.optDouble(g.learned)) {
        return false;
    }
    g.state = static_cast<AlertState>(state);
    if (g.state == AlertState::Resolved) {
        g.state = AlertState::Inactive;
    }
    g.history = history;
    g.history_len = static_cast<int>(len);
    g.latched = latched;
    g.notified = notified;
    return true;
}

void clamp(std::optional<TimePoint>& t, TimePoint now) {
    if (t && *t > now) {
        t = now;
    }
}

}  // namespace

std::string Engine::saveState() const {
    Writer w;
    w.data() += kMagic;
    w.u8(kVersion);
    w.time(started_);
    w.u64(rules_.size());
    for (std::size_t i = 0; i < rules_.size(); ++i) {
        w.str(rules_[i].name);
        w.u64(rules_[i].specHash());
        w.u64(groups_[i].size());
        for (const auto& [key, g] : groups_[i]) {
            w.str(key);
            w.u8(static_cast<unsigned char>(g.state));
            w.time(g.since);
            w.time(g.firing_since);
            w.time(g.healthy_since);
            w.u64(g.history);
            w.i64(g.history_len);
            w.i64(g.consecutive_errors);
            w.u8(g.latched ? 1 : 0);
            w.u8(g.notified ? 1 : 0);
            w.time(g.last_notified);
            w.time(g.last_evaluation);
            w.f64(g.learn_sum);
            w.i64(g.learn_n);
            w.optDouble(g.learned);
        }
    }
    const std::uint64_t sum = fnv(w.data());
    w.u64(sum);
    return std::move(w.data());
}

bool Engine::restoreState(std::string_view data, TimePoint now) {
    if (data.size() < kMagic.size() + 1 + 8 || data.substr(0, kMagic.size()) != kMagic) {
        return false;
    }
    const std::string_view body = data.substr(0, data.size() - 8);
    Reader tail(data.substr(data.size() - 8));
    std::uint64_t sum = 0;
    if (!tail.u64(sum) || sum != fnv(body)) {
        return false;
    }
    Reader r(body.substr(kMagic.size()));
    unsigned char version = 0;
    std::optional<TimePoint> started;
    std::uint64_t n_rules = 0;
    if (!r.u8(version) || version != kVersion || !r.time(started) || !r.u64(n_rules) || n_rules > kMaxCount) {
        return false;
    }
    std::map<std::string, SavedRule> saved;
    for (std::uint64_t i = 0; i < n_rules; ++i) {
        std::string name;
        SavedRule rule;
        std::uint64_t n_groups = 0;
        if (!r.str(name) || !r.u64(rule.hash) || !r.u64(n_groups) || n_groups > kMaxCount) {
            return false;
        }
        for (std::uint64_t j = 0; j < n_groups; ++j) {
            std::string key;
            detail::GroupState g;
            if (!r.str(key) || !readGroup(r, g)) {
                return false;
            }
            rule.groups.emplace(std::move(key), std::move(g));
        }
        saved.emplace(std::move(name), std::move(rule));
    }
    if (!r.done()) {
        return false;
    }

    // Everything parsed: only now change the engine.
    if (started) {
        started_ = *started > now ? now : *started;
    }
    for (std::size_t i = 0; i < rules_.size(); ++i) {
        const auto it = saved.find(rules_[i].name);
        if (it == saved.end() || it->second.hash != rules_[i].specHash()) {
            continue;
        }
        groups_[i] = std::move(it->second.groups);
        for (auto& [key, g] : groups_[i]) {
            clamp(g.since, now);
            clamp(g.firing_since, now);
            clamp(g.healthy_since, now);
            clamp(g.last_notified, now);
            clamp(g.last_evaluation, now);
            g.status = RuleStatus{};
            g.status.last_evaluation = g.last_evaluation;
            // Downtime counts toward `for` (Prometheus restoration): a `hold` right after
            // the restart must not shift the timers by the time the agent was down.
            g.last_evaluation.reset();
            g.status.state = g.state;
            g.status.group = key;
            g.status.since = g.since;
            g.status.firing_since = g.firing_since;
            g.status.latched = g.latched;
            g.status.notified = g.notified;
            g.status.learning = rules_[i].baseline.kind == BaselineKind::Learned && !g.learned;
            g.status.baseline = g.learned;
        }
        refreshSummary(i);
    }
    return true;
}

}  // namespace rollguard::rules
