// The scrape sources at run time: scheduling, extraction into store parts, and the
// per-target figures.
#include "rollguard/agent/scrape_loop.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "rollguard/agent/exposition.h"
#include "rollguard/agent/json_body.h"
#include "rollguard/agent/judge.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/proc_metrics.h"
#include "rollguard/agent/scraper.h"
#include "util/secret.h"

namespace rollguard::agent {

HistogramSettings histogramSettingsFor(const ScrapeStream& stream) {
    HistogramSettings settings;
    if (!stream.has_latency) {
        // Nothing is ever recorded: the smallest histogram the store accepts.
        settings.lowest = 1;
        settings.highest = 2;
        settings.sigfigs = 1;
    }
    return settings;
}

namespace {

using SteadyClock = std::chrono::steady_clock;
using Tuple = std::vector<std::string>;

/// At most this many points represent one histogram bucket's observations.
constexpr std::int64_t kSpreadPoints = 16;
const std::string kOther{rules::kOtherGroup};

/// What one scrape found for one label tuple of one series.
struct Accumulator {
    double value = 0.0;
    bool has_value = false;
    double events = 0.0;
    double errors = 0.0;
    std::vector<std::pair<double, std::int64_t>> latencies;  // (seconds, count)
};
using Found = std::map<Tuple, Accumulator>;

/// One stream of the judge, as the scrape thread writes it.
struct StreamOut {
    std::size_t judge = Judge::npos;
    StreamRouter router;
    HistogramSettings settings;
    std::vector<std::string> labels;
    std::size_t max_label_sets = 100;
    std::map<Tuple, std::vector<std::uint32_t>> routes;  // cached router answers

    /// The (capped) tuple of a label lookup.
    template <typename ValueOf>
    Tuple tupleOf(ValueOf&& value_of) {
        Tuple t;
        t.reserve(labels.size());
        for (const auto& l : labels) {
            std::string_view v = value_of(l);
            t.emplace_back(v.size() > kMaxLabelValueBytes ? std::string_view(kOther) : v);
        }
        if (!t.empty() && routes.count(t) == 0 && routes.size() >= max_label_sets) {
            std::fill(t.begin(), t.end(), kOther);
        }
        return t;
    }

    const std::vector<std::uint32_t>& streamsOf(const Tuple& t) {
        auto it = routes.find(t);
        if (it == routes.end()) {
            std::vector<std::uint32_t> streams;
            if (router) {
                router(t, streams);
            }
            it = routes.emplace(t, std::move(streams)).first;
        }
        return it->second;
    }
};

/// A counter's per-series trackers, forgetting series that vanish.
struct CounterSet {
    struct Entry {
        CounterTracker tracker;
        std::uint64_t seen = 0;
    };
    std::unordered_map<std::string, Entry> entries;
    std::uint64_t generation = 0;
    std::uint64_t resets = 0;

    void begin() { ++generation; }
    std::optional<double> observe(const std::string& key, double value, std::optional<std::int64_t> created = {}) {
        Entry& e = entries[key];
        e.seen = generation;
        const auto before = e.tracker.resets();
        auto inc = e.tracker.observe(value, created);
        resets += e.tracker.resets() - before;
        return inc;
    }
    /// After a good scrape: a series not seen in it starts over when it comes back.
    void end() {
        std::erase_if(entries, [this](const auto& kv) { return kv.second.seen != generation; });
    }
};

struct SeriesState {
    const ScrapeSeriesConfig* config = nullptr;
    StreamOut out;
    CounterSet counters;
    CounterSet error_counters;
};

/// The identity of a series: its name (unless `with_name` is false) and labels, but
/// `skip_label`.
std::string seriesKey(const Sample& s, std::string_view skip_label = {}, bool with_name = true) {
    std::string key = with_name ? s.name : std::string();
    for (const auto& l : s.labels) {
        if (l.name == skip_label) {
            continue;
        }
        key += '\x1f';
        key += l.name;
        key += '=';
        key += l.value;
    }
    return key;
}

std::string_view labelOf(const Sample& s, std::string_view name) {
    if (name == "__name__") {
        return s.name;
    }
    const std::string* v = s.label(name);
    return v != nullptr ? std::string_view(*v) : std::string_view();
}

/// The samples of `selector`: by exact sample name, then the matchers.
std::vector<const Sample*> selectSamples(const ParseResult& parsed, const SeriesSelector& selector,
                                         std::string_view suffix = {}) {
    std::vector<const Sample*> out;
    for (const Sample* s : parsed.select(selector.metric + std::string(suffix))) {
        if (selector.matches([&](std::string_view name) { return labelOf(*s, name); })) {
            out.push_back(s);
        }
    }
    return out;
}

/// OpenMetrics `_created` times of a counter family, by the labels of its samples.
std::unordered_map<std::string, std::int64_t> createdTimes(const ParseResult& parsed, const SeriesSelector& selector) {
    std::unordered_map<std::string, std::int64_t> out;
    const std::string_view metric = selector.metric;
    if (!metric.ends_with("_total")) {
        return out;
    }
    const std::string created = std::string(metric.substr(0, metric.size() - 6)) + "_created";
    for (const Sample* c : parsed.select(created)) {
        out.emplace(seriesKey(*c, {}, false), static_cast<std::int64_t>(std::llround(c->value * 1000.0)));
    }
    return out;
}

void extractGauge(const ParseResult& parsed, SeriesState& st, Found& found) {
    for (const Sample* s : selectSamples(parsed, st.config->selector)) {
        if (!std::isfinite(s->value)) {
            continue;
        }
        Accumulator& acc = found[st.out.tupleOf([&](std::string_view n) { return labelOf(*s, n); })];
        acc.value += s->value * st.config->scale;
        acc.has_value = true;
    }
}

void extractCounter(const ParseResult& parsed, const SeriesSelector& selector, CounterSet& counters, StreamOut& out,
                    Found& found, bool as_events, bool errors) {
    const auto created = createdTimes(parsed, selector);
    for (const Sample* s : selectSamples(parsed, selector)) {
        std::optional<std::int64_t> created_ms;
        if (const auto it = created.find(seriesKey(*s, {}, false)); it != created.end()) {
            created_ms = it->second;
        }
        const auto inc = counters.observe(seriesKey(*s), s->value, created_ms);
        if (!inc) {
            continue;
        }
        Accumulator& acc = found[out.tupleOf([&](std::string_view n) { return labelOf(*s, n); })];
        if (!as_events) {
            acc.value += *inc;
            acc.has_value = true;
        } else if (errors) {
            acc.errors += *inc;
        } else {
            acc.events += *inc;
        }
    }
}

void extractHistogram(const ParseResult& parsed, SeriesState& st, Found& found) {
    const ScrapeSeriesConfig& cfg = *st.config;
    // Group the buckets by histogram (labels without `le`).
    struct Histogram {
        const Sample* first = nullptr;
        std::vector<std::pair<double, double>> increases;  // (le, cumulative increase)
        bool complete = true;
    };
    std::map<std::string, Histogram> histograms;
    for (const Sample* s : selectSamples(parsed, cfg.selector, "_bucket")) {
        const std::string* le_text = s->label("le");
        if (le_text == nullptr) {
            continue;
        }
        double le = 0.0;
        if (*le_text == "+Inf" || *le_text == "Inf" || *le_text == "+inf") {
            le = std::numeric_limits<double>::infinity();
        } else {
            const auto [ptr, ec] = std::from_chars(le_text->data(), le_text->data() + le_text->size(), le);
            if (ec != std::errc{}) {
                continue;
            }
        }
        Histogram& h = histograms[seriesKey(*s, "le")];
        if (h.first == nullptr) {
            h.first = s;
        }
        const auto inc = st.counters.observe(seriesKey(*s), s->value);
        if (!inc) {
            h.complete = false;  // a first reading: no increase for this histogram yet
            continue;
        }
        h.increases.emplace_back(le, *inc);
    }
    for (auto& [key, h] : histograms) {
        if (!h.complete || h.increases.empty()) {
            continue;
        }
        std::sort(h.increases.begin(), h.increases.end());
        if (!std::isinf(h.increases.back().first)) {
            continue;  // no +Inf bucket: not a valid histogram
        }
        // A named reference: clang before 16 cannot capture a structured binding.
        const Sample& sample = *h.first;
        Accumulator& acc = found[st.out.tupleOf([&](std::string_view n) { return labelOf(sample, n); })];
        double below = 0.0;        // cumulative increase up to the previous bound
        double lower = 0.0;        // the previous bound, in seconds
        double at_bound = 0.0;     // cumulative increase at the largest le <= errors_above
        double highest_finite = 0.0;
        for (auto& [le, cumulative] : h.increases) {
            cumulative = std::max(cumulative, below);  // monotonic, as histogram_quantile makes it
            const double upper = std::isinf(le) ? highest_finite : le * cfg.scale;
            const auto n = static_cast<std::int64_t>(std::llround(cumulative - below));
            if (n > 0) {
                const double lo = std::isinf(le) ? upper : std::min(lower, upper);
                const std::int64_t points = std::min(n, kSpreadPoints);
                for (std::int64_t p = 0; p < points; ++p) {
                    const std::int64_t count = n / points + (p < n % points ? 1 : 0);
                    const double v = lo + (upper - lo) * (static_cast<double>(p) + 0.5) / static_cast<double>(points);
                    acc.latencies.emplace_back(v, count);
                }
            }
            if (cfg.errors_above && !std::isinf(le) && le * cfg.scale <= *cfg.errors_above) {
                at_bound = cumulative;
            }
            if (!std::isinf(le)) {
                highest_finite = le * cfg.scale;
                lower = le * cfg.scale;
            }
            below = cumulative;
        }
        acc.events += below;
        if (cfg.errors_above) {
            acc.errors += below - at_bound;
        }
    }
}

std::string percentEncode(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const unsigned char c : s) {
        if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

rules::TimePoint wallNow() {
    return std::chrono::time_point_cast<rules::TimePoint::duration>(std::chrono::system_clock::now());
}

std::string selectorText(const ProcessSelector& p) {
    switch (p.kind) {
        case ProcessSelector::PidFile:
            return "pid_file=" + p.value;
        case ProcessSelector::Name:
            return "command=" + p.value;
        case ProcessSelector::Cgroup:
            return "cgroup=" + p.value;
        case ProcessSelector::Unit:
            return "unit=" + p.value;
    }
    return p.value;
}

}  // namespace

struct ScrapeLoop::Impl {
    struct SourceState;

    struct Target {
        SourceState* source = nullptr;
        std::size_t query = 0;  // promql: index of the series this query feeds
        ScrapeRequest request;  // url etc.; secrets filled per scrape
        bool http = true;       // false: local file or /proc, read synchronously
        SteadyClock::duration offset{};
        SteadyClock::time_point next_due{};
        std::uint64_t in_flight = 0;  // request id, 0 = none
        bool last_ok = false;       // for the source's "up"
        bool logged_down = false;   // a failure was logged and no success since
        ScrapeTargetStatus status;  // guarded by Impl::status_mutex
        std::set<std::string> warned_secret_permissions;  // secret file modes already logged
    };

    struct SourceState {
        const ScrapeSourceConfig* config = nullptr;
        std::vector<SeriesState> series;
        std::optional<StreamOut> up;
        std::optional<StreamOut> checks;
        std::vector<StreamOut> process;  // rss_bytes, cpu_percent, open_fds, threads, processes
        CpuPercent cpu;
        std::optional<SteadyClock::time_point> last_cpu_sample;
        std::vector<Target*> targets;
    };

    Judge& judge;
    std::string host;
    std::vector<std::unique_ptr<SourceState>> sources;
    std::vector<std::unique_ptr<Target>> targets;
    Scraper scraper;
    simdjson::ondemand::parser json;
    JsonBody json_body;  // the json sources' bodies, one at a time

    mutable std::mutex harvest_mutex;
    ScrapeHarvest harvest;
    mutable std::mutex status_mutex;

    std::thread thread;
    std::atomic<bool> stopping{false};

    Impl(const Config& config, Judge& j, std::string h) : judge(j), host(std::move(h)) {
        for (const auto& cfg : config.scrapes) {
            auto src = std::make_unique<SourceState>();
            src->config = &cfg;
            const auto streams = scrapeStreams(cfg);
            std::size_t next = 0;
            const auto streamOut = [&](const ScrapeStream& s) {
                StreamOut out;
                out.judge = judge.sourceIndex(s.name);
                if (out.judge != Judge::npos) {
                    out.router = judge.routerFor(out.judge);
                }
                out.settings = histogramSettingsFor(s);
                out.labels = s.labels;
                out.max_label_sets = s.max_label_sets;
                return out;
            };
            for (const auto& series : cfg.series) {
                SeriesState st;
                st.config = &series;
                st.out = streamOut(streams[next++]);
                src->series.push_back(std::move(st));
            }
            for (; next < streams.size(); ++next) {
                const std::string suffix = streams[next].name.substr(cfg.name.size() + 1);
                if (suffix == "up") {
                    src->up = streamOut(streams[next]);
                } else if (suffix == "checks") {
                    src->checks = streamOut(streams[next]);
                } else {
                    src->process.push_back(streamOut(streams[next]));
                }
            }
            const auto addTarget = [&](std::string url, std::size_t query, std::string series_name) {
                auto t = std::make_unique<Target>();
                t->source = src.get();
                t->query = query;
                t->http = !url.empty();
                t->request.url = url;
                t->request.timeout = cfg.timeout;
                t->request.max_bytes = cfg.max_bytes;
                for (const auto& [k, v] : cfg.headers) {
                    t->request.headers.push_back(k + ": " + v);
                }
                if (cfg.type == ScrapeType::Prometheus) {
                    t->request.headers.push_back(std::string("Accept: ") + kScrapeAcceptHeader);
                } else if (cfg.type == ScrapeType::Json || cfg.type == ScrapeType::Promql) {
                    t->request.headers.emplace_back("Accept: application/json");
                }
                t->request.ca_file = cfg.ca_file;
                t->request.client_cert = cfg.cert_file;
                t->request.client_key = cfg.key_file;
                t->request.insecure = cfg.insecure_skip_verify;
                t->status.source = cfg.name;
                t->status.type = toString(cfg.type);
                t->status.series = std::move(series_name);
                if (cfg.type == ScrapeType::Process) {
                    t->status.target = selectorText(cfg.process);
                } else if (!url.empty()) {
                    t->status.target = url;
                } else {
                    t->status.target = cfg.path;
                }
                const std::string key = t->status.target + '\x1f' + host;
                t->offset = cfg.jitter ? std::chrono::duration_cast<SteadyClock::duration>(
                                             jitteredOffset(key, cfg.interval))
                                       : SteadyClock::duration::zero();
                src->targets.push_back(t.get());
                targets.push_back(std::move(t));
            };
            if (cfg.type == ScrapeType::Promql) {
                std::string base = cfg.url;
                while (!base.empty() && base.back() == '/') {
                    base.pop_back();
                }
                for (std::size_t i = 0; i < cfg.series.size(); ++i) {
                    addTarget(base + "/api/v1/query?query=" + percentEncode(cfg.series[i].query), i,
                              cfg.series[i].name);
                }
            } else {
                addTarget(cfg.url, 0, "");
            }
            sources.push_back(std::move(src));
        }
    }

    // --- scheduling -------------------------------------------------------------------

    /// The first due time after `now` on the target's grid (interval, offset).
    SteadyClock::time_point nextDue(const Target& t, SteadyClock::time_point now) const {
        const auto interval = std::chrono::duration_cast<SteadyClock::duration>(t.source->config->interval);
        const auto since = now.time_since_epoch() - t.offset;
        const auto turns = since.count() >= 0 ? since / interval + 1 : 0;
        return SteadyClock::time_point{t.offset + turns * interval};
    }

    void launch(Target& t, SteadyClock::time_point now) {
        const auto& cfg = *t.source->config;
        if (!t.http) {
            const auto started = SteadyClock::now();
            if (cfg.type == ScrapeType::Process) {
                scrapeProcess(t, now);
            } else {
                ScrapeResponse r;
                std::ifstream in(cfg.path, std::ios::binary);
                if (!in) {
                    r.error = ScrapeErrorKind::Other;
                    r.message = "cannot read " + cfg.path;
                } else {
                    std::stringstream ss;
                    ss << in.rdbuf();
                    r.body = ss.str();
                    r.error = ScrapeErrorKind::None;
                }
                r.duration = SteadyClock::now() - started;
                handle(t, std::move(r));
            }
            return;
        }
        ScrapeRequest req = t.request;
        std::string error;
        bool ok = readScrapeSecret(t, cfg.bearer_token_file, cfg.bearer_token_env, "bearer token", req.bearer_token,
                                   error);
        if (ok && !cfg.basic_username.empty()) {
            req.basic_user = cfg.basic_username;
            ok = readScrapeSecret(t, cfg.basic_password_file, cfg.basic_password_env, "basic_auth password",
                                  req.basic_password, error);
        }
        if (!ok) {
            fail(t, "credentials", error, std::chrono::nanoseconds{0});
            return;
        }
        t.in_flight = scraper.start(req);
    }

    /// A secret of a scrape source, read on every scrape (so a rotated file is picked up)
    /// with the hooks' reader (util/secret.h): an empty file or unset variable fails the
    /// scrape as a "credentials" error; a file readable by group or others is used, with a
    /// warning logged once per target and problem rather than on every scrape. Nothing
    /// configured is no secret, not an error.
    bool readScrapeSecret(Target& t, const std::string& file, const std::string& env, const std::string& what,
                          std::string& out, std::string& error) {
        if (file.empty() && env.empty()) {
            return true;
        }
        std::string permission_problem;
        const bool ok = readSecret(file, env, what, out, error, &permission_problem);
        if (!permission_problem.empty() && t.warned_secret_permissions.insert(permission_problem).second) {
            spdlog::warn("scrape source {}: {}", t.source->config->name, permission_problem);
        }
        return ok;
    }

    void runThread() {
        const auto now0 = SteadyClock::now();
        for (auto& t : targets) {
            t->next_due = nextDue(*t, now0 - std::chrono::nanoseconds{1}) ;
        }
        while (!stopping.load()) {
            const auto now = SteadyClock::now();
            auto soonest = now + std::chrono::seconds{1};
            for (auto& t : targets) {
                if (now >= t->next_due) {
                    if (t->in_flight == 0) {
                        launch(*t, now);
                    }
                    t->next_due = nextDue(*t, now);
                }
                soonest = std::min(soonest, t->next_due);
            }
            for (auto& [id, response] : scraper.poll(std::max(soonest - SteadyClock::now(), SteadyClock::duration{0}))) {
                complete(id, std::move(response));
            }
        }
    }

    void complete(std::uint64_t id, ScrapeResponse response) {
        for (auto& t : targets) {
            if (t->in_flight == id) {
                t->in_flight = 0;
                handle(*t, std::move(response));
                return;
            }
        }
    }

    void scrapeAll() {
        const auto now = SteadyClock::now();
        for (auto& t : targets) {
            if (t->in_flight == 0) {
                launch(*t, now);
            }
        }
        while (std::any_of(targets.begin(), targets.end(), [](const auto& t) { return t->in_flight != 0; })) {
            for (auto& [id, response] : scraper.poll(std::chrono::milliseconds{100})) {
                complete(id, std::move(response));
            }
        }
    }

    // --- results ----------------------------------------------------------------------

    /// Per judge stream, the stats of this scrape.
    struct Batch {
        std::map<std::pair<std::size_t, std::uint32_t>, IntervalStats> stats;
        std::vector<std::pair<std::size_t, bool>> fetch;

        IntervalStats& at(const StreamOut& out, std::uint32_t stream) {
            auto it = stats.find({out.judge, stream});
            if (it == stats.end()) {
                it = stats.emplace(std::pair(out.judge, stream), IntervalStats(out.settings)).first;
            }
            return it->second;
        }
    };

    static void addTo(IntervalStats& s, const Accumulator& acc, const HistogramSettings& settings) {
        if (acc.has_value) {
            s.value_sum += acc.value;
            s.value_count = 1;  // one reading per scrape, however many series it sums
            s.last_value = s.value_sum;
        }
        s.events += std::llround(acc.events);
        s.errors += std::llround(acc.errors);
        for (const auto& [seconds, count] : acc.latencies) {
            const auto units = static_cast<std::int64_t>(std::llround(seconds * settings.units_per_second));
            s.latency.record(std::max<std::int64_t>(units, settings.lowest), count);
        }
    }

    static void emit(Batch& batch, StreamOut& out, const Found& found) {
        if (out.judge == Judge::npos) {
            return;
        }
        batch.fetch.emplace_back(out.judge, false);
        for (const auto& [tuple, acc] : found) {
            addTo(batch.at(out, 0), acc, out.settings);
            for (const std::uint32_t stream : out.streamsOf(tuple)) {
                addTo(batch.at(out, stream), acc, out.settings);
            }
        }
    }

    static void emitValue(Batch& batch, StreamOut& out, double value) {
        Found found;
        found[{}] = Accumulator{value, true, 0, 0, {}};
        emit(batch, out, found);
    }

    static void markFailed(Batch& batch, const StreamOut& out) {
        if (out.judge != Judge::npos) {
            batch.fetch.emplace_back(out.judge, true);
        }
    }

    void publish(Batch& batch) {
        std::lock_guard lock(harvest_mutex);
        for (auto& [key, stats] : batch.stats) {
            RecordedPart part{key.second, std::nullopt, std::move(stats)};
            harvest.parts.push_back(ScrapeHarvest::Part{key.first, std::move(part)});
        }
        for (const auto& f : batch.fetch) {
            harvest.fetch_errors.push_back(f);
        }
    }

    void fail(Target& t, const std::string& kind, const std::string& message, std::chrono::nanoseconds duration) {
        SourceState& src = *t.source;
        t.last_ok = false;
        Batch batch;
        if (src.config->type == ScrapeType::Promql) {
            markFailed(batch, src.series[t.query].out);
        } else {
            for (auto& s : src.series) {
                markFailed(batch, s.out);
            }
            // Every process stream but "processes" (the last), which recorded 0.
            for (std::size_t i = 0; i + 1 < src.process.size(); ++i) {
                markFailed(batch, src.process[i]);
            }
        }
        if (src.up) {
            emitValue(batch, *src.up, 0.0);
        }
        if (src.checks) {
            Found found;
            found[{}] = Accumulator{0, false, 1, 1, {{std::chrono::duration<double>(duration).count(), 1}}};
            emit(batch, *src.checks, found);
        }
        publish(batch);
        {
            std::lock_guard lock(status_mutex);
            ++t.status.scrapes;
            ++t.status.errors[kind];
            t.status.up = false;
            t.status.last_error = message;
            t.status.last_duration_seconds = std::chrono::duration<double>(duration).count();
            t.status.last_scrape = wallNow();
        }
        if (!t.logged_down) {
            t.logged_down = true;
            spdlog::warn("source {}: scrape of {} failed ({}): {}", src.config->name, t.status.target, kind, message);
        }
    }

    void succeed(Target& t, std::chrono::nanoseconds duration, std::uint64_t samples, const std::string& partial_kind,
                 const std::string& partial_error) {
        t.last_ok = true;
        if (t.logged_down) {
            t.logged_down = false;
            spdlog::info("source {}: scrape of {} works again", t.source->config->name, t.status.target);
        }
        std::uint64_t resets = 0;
        for (const auto& s : t.source->series) {
            resets += s.counters.resets + s.error_counters.resets;
        }
        std::lock_guard lock(status_mutex);
        ++t.status.scrapes;
        t.status.up = true;
        t.status.samples = samples;
        t.status.counter_resets = resets;
        t.status.last_duration_seconds = std::chrono::duration<double>(duration).count();
        t.status.last_scrape = wallNow();
        t.status.last_error = partial_error;
        if (!partial_kind.empty()) {
            ++t.status.errors[partial_kind];
        }
    }

    /// Up for the source: every target's last scrape worked (promql has one per query).
    static bool sourceUp(const SourceState& src) {
        return std::all_of(src.targets.begin(), src.targets.end(), [](const Target* t) { return t->last_ok; });
    }

    void handle(Target& t, ScrapeResponse r) {
        SourceState& src = *t.source;
        const auto& cfg = *src.config;
        if (cfg.type == ScrapeType::Health) {
            handleHealth(t, r);
            return;
        }
        if (!r.ok()) {
            std::string message = r.message;
            if (cfg.type == ScrapeType::Promql && !r.body.empty()) {
                std::string api_error;
                std::vector<std::pair<Tuple, double>> ignored;
                if (!parsePromql(r.body, src.series[t.query].out, ignored, api_error) && !api_error.empty()) {
                    message += ": " + api_error;
                }
            }
            fail(t, std::string(toString(r.error)), message, r.duration);
            return;
        }
        switch (cfg.type) {
            case ScrapeType::Prometheus:
                handlePrometheus(t, r);
                return;
            case ScrapeType::Json:
                handleJson(t, r);
                return;
            case ScrapeType::Promql:
                handlePromqlAnswer(t, r);
                return;
            case ScrapeType::Health:
            case ScrapeType::Process:
                return;
        }
    }

    void handlePrometheus(Target& t, const ScrapeResponse& r) {
        SourceState& src = *t.source;
        const ParseResult parsed = parseExposition(r.body, formatFromContentType(r.content_type));
        if (!parsed.ok) {
            fail(t, "parse", parsed.errors.empty() ? "unparseable body" : parsed.errors.front().message(), r.duration);
            return;
        }
        Batch batch;
        for (auto& st : src.series) {
            Found found;
            st.counters.begin();
            st.error_counters.begin();
            switch (st.config->kind) {
                case ScrapeSeriesConfig::Kind::Gauge:
                case ScrapeSeriesConfig::Kind::Query:
                    extractGauge(parsed, st, found);
                    break;
                case ScrapeSeriesConfig::Kind::Counter:
                    extractCounter(parsed, st.config->selector, st.counters, st.out, found, false, false);
                    break;
                case ScrapeSeriesConfig::Kind::Events:
                    extractCounter(parsed, st.config->selector, st.counters, st.out, found, true, false);
                    if (st.config->errors) {
                        extractCounter(parsed, *st.config->errors, st.error_counters, st.out, found, true, true);
                    }
                    break;
                case ScrapeSeriesConfig::Kind::Histogram:
                    extractHistogram(parsed, st, found);
                    break;
            }
            st.counters.end();
            st.error_counters.end();
            emit(batch, st.out, found);
        }
        if (src.up) {
            emitValue(batch, *src.up, 1.0);
        }
        publish(batch);
        succeed(t, r.duration, parsed.samples.size(), "", "");
    }

    void handleJson(Target& t, const ScrapeResponse& r) {
        SourceState& src = *t.source;
        if (!json_body.load(r.body)) {
            fail(t, "parse", "body is not a JSON object or array", r.duration);
            return;
        }
        Batch batch;
        std::uint64_t values = 0;
        std::string missing;
        for (auto& st : src.series) {
            std::string error;
            const auto read = [&](const SeriesSelector& sel) { return json_body.numberAt(sel.metric, error); };
            Found found;
            Accumulator& acc = found[{}];
            bool ok = true;
            switch (st.config->kind) {
                case ScrapeSeriesConfig::Kind::Gauge:
                case ScrapeSeriesConfig::Kind::Query:
                case ScrapeSeriesConfig::Kind::Histogram:
                    if (auto v = read(st.config->selector); v && std::isfinite(*v)) {
                        acc.value = *v * st.config->scale;
                        acc.has_value = true;
                    } else {
                        ok = false;
                    }
                    break;
                case ScrapeSeriesConfig::Kind::Counter:
                case ScrapeSeriesConfig::Kind::Events: {
                    const bool events = st.config->kind == ScrapeSeriesConfig::Kind::Events;
                    st.counters.begin();
                    if (auto v = read(st.config->selector)) {
                        if (auto inc = st.counters.observe(st.config->selector.metric, *v)) {
                            (events ? acc.events : acc.value) += *inc;
                            acc.has_value = !events;
                        }
                    } else {
                        ok = false;
                    }
                    if (ok && events && st.config->errors) {
                        st.error_counters.begin();
                        if (auto v = read(*st.config->errors)) {
                            if (auto inc = st.error_counters.observe(st.config->errors->metric, *v)) {
                                acc.errors += *inc;
                            }
                        } else {
                            ok = false;
                        }
                    }
                    break;
                }
            }
            if (!ok) {
                markFailed(batch, st.out);
                if (missing.empty()) {
                    missing = "series " + st.config->name + ": " + error;
                }
                continue;
            }
            ++values;
            emit(batch, st.out, found);
        }
        if (src.up) {
            emitValue(batch, *src.up, 1.0);
        }
        publish(batch);
        succeed(t, r.duration, values, missing.empty() ? "" : "missing_value", missing);
    }

    /// Parses a /api/v1/query answer into (tuple, value) samples. False with `error` for
    /// an error answer or a body that is not one; an empty vector is a success.
    bool parsePromql(const std::string& body, StreamOut& out, std::vector<std::pair<Tuple, double>>& samples,
                     std::string& error) {
        const simdjson::padded_string text(body);
        simdjson::ondemand::document doc;
        if (json.iterate(text).get(doc) != simdjson::SUCCESS) {
            error = "answer is not JSON";
            return false;
        }
        simdjson::ondemand::object root;
        if (doc.get_object().get(root) != simdjson::SUCCESS) {
            error = "answer is not a JSON object";
            return false;
        }
        std::string_view status;
        if (root.find_field_unordered("status").get_string().get(status) != simdjson::SUCCESS) {
            error = "answer has no status";
            return false;
        }
        if (status != "success") {
            std::string_view type, message;
            if (root.find_field_unordered("errorType").get_string().get(type) != simdjson::SUCCESS) {
                type = {};
            }
            if (root.find_field_unordered("error").get_string().get(message) != simdjson::SUCCESS) {
                message = {};
            }
            error = std::string(type) + (type.empty() ? "" : ": ") + std::string(message);
            if (error.empty()) {
                error = "status " + std::string(status);
            }
            return false;
        }
        simdjson::ondemand::object data;
        if (root.find_field_unordered("data").get_object().get(data) != simdjson::SUCCESS) {
            error = "answer has no data";
            return false;
        }
        std::string_view result_type;
        if (data.find_field_unordered("resultType").get_string().get(result_type) != simdjson::SUCCESS) {
            error = "answer has no resultType";
            return false;
        }
        const auto parseValue = [](simdjson::ondemand::array pair, double& v) {
            std::size_t i = 0;
            for (auto element : pair) {
                if (i++ == 1) {
                    std::string_view s;
                    if (element.get_string().get(s) != simdjson::SUCCESS) {
                        return false;
                    }
                    if (s == "+Inf" || s == "-Inf" || s == "NaN") {
                        v = s == "+Inf"   ? std::numeric_limits<double>::infinity()
                            : s == "-Inf" ? -std::numeric_limits<double>::infinity()
                                          : std::numeric_limits<double>::quiet_NaN();
                        return true;
                    }
                    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
                    return ec == std::errc{} && ptr == s.data() + s.size();
                }
            }
            return false;
        };
        if (result_type == "scalar") {
            simdjson::ondemand::array pair;
            double v = 0.0;
            if (data.find_field_unordered("result").get_array().get(pair) != simdjson::SUCCESS ||
                !parseValue(pair, v)) {
                error = "malformed scalar result";
                return false;
            }
            samples.emplace_back(Tuple(out.labels.size()), v);
            return true;
        }
        if (result_type != "vector") {
            error = "result type " + std::string(result_type) + " is not supported (use an instant vector or scalar)";
            return false;
        }
        simdjson::ondemand::array result;
        if (data.find_field_unordered("result").get_array().get(result) != simdjson::SUCCESS) {
            error = "answer has no result";
            return false;
        }
        for (auto item : result) {
            simdjson::ondemand::object obj;
            if (item.get_object().get(obj) != simdjson::SUCCESS) {
                error = "malformed result item";
                return false;
            }
            std::map<std::string, std::string, std::less<>> labels;
            simdjson::ondemand::object metric;
            if (obj.find_field_unordered("metric").get_object().get(metric) == simdjson::SUCCESS) {
                for (auto field : metric) {
                    std::string_view key, value;
                    if (field.unescaped_key().get(key) == simdjson::SUCCESS &&
                        field.value().get_string().get(value) == simdjson::SUCCESS) {
                        labels.emplace(std::string(key), std::string(value));
                    }
                }
            }
            simdjson::ondemand::array pair;
            double v = 0.0;
            if (obj.find_field_unordered("value").get_array().get(pair) != simdjson::SUCCESS || !parseValue(pair, v)) {
                error = "malformed result value";
                return false;
            }
            samples.emplace_back(out.tupleOf([&](std::string_view name) {
                const auto it = labels.find(name);
                return it == labels.end() ? std::string_view() : std::string_view(it->second);
            }),
                                 v);
        }
        return true;
    }

    void handlePromqlAnswer(Target& t, const ScrapeResponse& r) {
        SourceState& src = *t.source;
        SeriesState& st = src.series[t.query];
        std::vector<std::pair<Tuple, double>> samples;
        std::string error;
        if (!parsePromql(r.body, st.out, samples, error)) {
            fail(t, "parse", error, r.duration);
            return;
        }
        Found found;
        for (const auto& [tuple, v] : samples) {
            if (!std::isfinite(v)) {
                continue;
            }
            Accumulator& acc = found[tuple];
            acc.value += v * st.config->scale;
            acc.has_value = true;
        }
        Batch batch;
        emit(batch, st.out, found);
        t.last_ok = true;
        if (src.up) {
            emitValue(batch, *src.up, sourceUp(src) ? 1.0 : 0.0);
        }
        publish(batch);
        succeed(t, r.duration, samples.size(), "", "");
    }

    void handleHealth(Target& t, const ScrapeResponse& r) {
        SourceState& src = *t.source;
        const auto& cfg = *src.config;
        std::string kind, message;
        const bool transport_ok = r.ok() || r.error == ScrapeErrorKind::HttpStatus;
        if (!transport_ok) {
            kind = std::string(toString(r.error));
            message = r.message;
        } else {
            const bool status_ok =
                cfg.status.empty()
                    ? (r.status >= 200 && r.status <= 299)
                    : std::any_of(cfg.status.begin(), cfg.status.end(),
                                  [&](const auto& range) { return r.status >= range.first && r.status <= range.second; });
            if (!status_ok) {
                kind = "http_status";
                message = "HTTP " + std::to_string(r.status);
            } else if (!cfg.body_contains.empty() && r.body.find(cfg.body_contains) == std::string::npos) {
                kind = "body_mismatch";
                message = "body does not contain \"" + cfg.body_contains + "\"";
            }
        }
        if (!kind.empty()) {
            fail(t, kind, message, r.duration);
            return;
        }
        Batch batch;
        if (src.up) {
            emitValue(batch, *src.up, 1.0);
        }
        if (src.checks) {
            Found found;
            found[{}] = Accumulator{0, false, 1, 0, {{std::chrono::duration<double>(r.duration).count(), 1}}};
            emit(batch, *src.checks, found);
        }
        publish(batch);
        succeed(t, r.duration, 1, "", "");
    }

    void scrapeProcess(Target& t, SteadyClock::time_point now) {
        SourceState& src = *t.source;
        const auto started = SteadyClock::now();
        std::string error;
        const auto pids = findProcesses(src.config->process, error);
        const auto elapsed = SteadyClock::now() - started;
        // process streams: rss_bytes, cpu_percent, open_fds, threads, processes
        if (src.process.size() != 5) {
            return;
        }
        if (!error.empty() || pids.empty()) {
            Batch batch;
            emitValue(batch, src.process[4], 0.0);
            publish(batch);
            src.cpu.reset();
            src.last_cpu_sample.reset();
            fail(t, error.empty() ? "not_found" : "process", error.empty() ? "no process matches" : error, elapsed);
            return;
        }
        const ProcessSample sample = readProcesses(pids);
        Batch batch;
        emitValue(batch, src.process[0], sample.rss_bytes);
        std::optional<double> cpu;
        if (src.last_cpu_sample) {
            cpu = src.cpu.update(sample, now - *src.last_cpu_sample);
        } else {
            src.cpu.update(sample, std::chrono::nanoseconds{0});
        }
        src.last_cpu_sample = now;
        if (cpu) {
            emitValue(batch, src.process[1], *cpu);
        }
        emitValue(batch, src.process[2], static_cast<double>(sample.open_fds));
        emitValue(batch, src.process[3], static_cast<double>(sample.threads));
        emitValue(batch, src.process[4], static_cast<double>(sample.processes));
        publish(batch);
        succeed(t, SteadyClock::now() - started, static_cast<std::uint64_t>(sample.processes), "", "");
    }
};

ScrapeLoop::ScrapeLoop(const Config& config, Judge& judge, std::string host)
    : impl_(std::make_unique<Impl>(config, judge, std::move(host))) {}

ScrapeLoop::~ScrapeLoop() {
    stop();
}

bool ScrapeLoop::empty() const {
    return impl_->targets.empty();
}

void ScrapeLoop::start() {
    if (impl_->thread.joinable() || impl_->targets.empty()) {
        return;
    }
    impl_->stopping = false;
    impl_->thread = std::thread([this] { impl_->runThread(); });
}

void ScrapeLoop::stop() {
    if (!impl_->thread.joinable()) {
        return;
    }
    impl_->stopping = true;
    impl_->scraper.wakeup();
    impl_->thread.join();
}

void ScrapeLoop::scrapeOnce() {
    impl_->scrapeAll();
}

ScrapeHarvest ScrapeLoop::take() {
    std::lock_guard lock(impl_->harvest_mutex);
    return std::exchange(impl_->harvest, {});
}

std::vector<ScrapeTargetStatus> ScrapeLoop::status() const {
    std::lock_guard lock(impl_->status_mutex);
    std::vector<ScrapeTargetStatus> out;
    out.reserve(impl_->targets.size());
    for (const auto& t : impl_->targets) {
        out.push_back(t->status);
    }
    return out;
}

}  // namespace rollguard::agent
