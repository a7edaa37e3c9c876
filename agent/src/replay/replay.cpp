#include "rollguard/agent/replay.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rollguard/agent/json_writer.h"
#include "rollguard/agent/judge.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/rules/duration.h"

namespace rollguard::agent {

namespace {

using SteadyClock = std::chrono::steady_clock;

double secondsSince(SteadyClock::time_point start) {
    return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

/// The tailer takes glob(3) patterns; a file name is matched literally by escaping
/// the characters glob (with GLOB_BRACE) would interpret.
std::string globEscape(const std::string& path) {
    std::string out;
    out.reserve(path.size());
    for (const char c : path) {
        if (std::strchr("\\*?[]{}", c) != nullptr) {
            out.push_back('\\');
        }
        out.push_back(c);
    }
    return out;
}

struct FileInfo {
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;
    std::uint64_t size = 0;
};

/// Checks that `path` is a readable regular file; returns the reason when it is not.
std::string checkReadable(const std::string& path, FileInfo& info) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return std::strerror(errno);
    }
    struct stat st {};
    std::string reason;
    if (::fstat(fd, &st) != 0) {
        reason = std::strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        reason = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
    } else {
        info.path = path;
        info.dev = st.st_dev;
        info.ino = st.st_ino;
        info.size = static_cast<std::uint64_t>(st.st_size);
    }
    ::close(fd);
    return reason;
}

bool endsWithoutNewline(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return false;
    }
    struct stat st {};
    char last = '\n';
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
        if (::pread(fd, &last, 1, st.st_size - 1) != 1) {
            last = '\n';
        }
    }
    ::close(fd);
    return last != '\n';
}

/// Calls on_progress every interval from its own thread until destroyed. It only reads
/// the tailer's atomic counters, so the reading thread never waits for it.
class ProgressTicker {
public:
    ProgressTicker(const ReplayOptions& options, ReplayProgress base, const LogSourceCounters& counters)
        : options_(options), base_(std::move(base)), counters_(counters), start_(SteadyClock::now()) {
        if (options_.on_progress) {
            thread_ = std::thread([this] { run(); });
        }
    }
    ~ProgressTicker() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    ProgressTicker(const ProgressTicker&) = delete;
    ProgressTicker& operator=(const ProgressTicker&) = delete;

private:
    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (!cv_.wait_for(lock, options_.progress_interval, [this] { return stop_; })) {
            ReplayProgress p = base_;
            p.bytes_read = counters_.bytes.load(std::memory_order_relaxed);
            p.lines = counters_.lines.load(std::memory_order_relaxed);
            p.seconds = secondsSince(start_);
            lock.unlock();
            options_.on_progress(p);
            lock.lock();
        }
    }

    const ReplayOptions& options_;
    ReplayProgress base_;
    const LogSourceCounters& counters_;
    SteadyClock::time_point start_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

/// Replay's label-set totals use stream ids from here up, clear of the judge's streams.
constexpr std::uint32_t kLabelSetStreamBase = 1U << 24;

std::string shortest(double v);

std::string conditionText(const rules::RuleSpec& rule) {
    const MetricUnit unit = metricUnitOf(rule.metric);
    std::string out;
    if (rule.compare.kind == rules::CompareKind::MannWhitney) {
        out = "worse than the baseline (Mann-Whitney at " + shortest(rule.compare.confidence * 100.0) +
              "% confidence, effect above +" + shortest(rule.compare.max_increase * 100.0) + "%)";
    } else {
        out = std::string(rules::toString(rule.comparison)) + " ";
        switch (rule.threshold_kind) {
            case rules::ThresholdKind::Absolute:
                out += formatMetricValue(rule.threshold, unit);
                break;
            case rules::ThresholdKind::Factor:
                out += shortest(rule.threshold) + "x the baseline";
                break;
            case rules::ThresholdKind::Percent:
                out += (rule.threshold >= 0 ? "+" : "") + shortest(rule.threshold * 100.0) + "% of the baseline";
                break;
        }
    }
    if (rule.breaches_n > 0) {
        out += " in " + std::to_string(rule.breaches_m) + " of " + std::to_string(rule.breaches_n) + " evaluations";
    } else if (rule.for_.count() > 0) {
        out += " for " + rules::formatDuration(rule.for_);
    }
    return out + " (window " + rules::formatDuration(rule.window) + ")";
}

/// One source's rules evaluated on the log's own time, tick by tick, through the
/// daemon's judge: a tick T is evaluated once data stamped at or after T has been read
/// (so every bucket before T is in), with the parts of buckets before T added at T.
/// Data arriving later than that is late data, kept or dropped per `lateness` exactly
/// as the daemon does.
class TimelineRun {
public:
    TimelineRun(const Config& config, const LogSourceConfig& source, TimelineBuilder& builder,
                const ReplayOptions& options)
        : config_(subConfig(config, source)),
          judge_(config_),
          builder_(builder),
          tick_(config.agent.tick),
          from_(options.from),
          to_(options.to) {}

    StreamRouter router() { return judge_.routerFor(0); }

    void add(RecordedPart part) {
        if (!part.at) {
            part.at = max_seen_.value_or(rules::TimePoint{});
        }
        max_seen_ = max_seen_ ? std::max(*max_seen_, *part.at) : *part.at;
        pending_.push_back(std::move(part));
    }

    /// Evaluates the ticks whose data is in; with `final`, every tick up to the end.
    void advance(bool final) {
        if (!max_seen_) {
            return;
        }
        if (!next_) {
            rules::TimePoint first = *max_seen_;
            for (const auto& p : pending_) {
                first = std::min(first, *p.at);
            }
            next_ = floorToTick(first) + duration(tick_);
        }
        const rules::TimePoint limit = final ? *max_seen_ + duration(tick_) : *max_seen_;
        while (*next_ <= limit && !done()) {
            const rules::TimePoint t = *next_;
            auto split = std::stable_partition(pending_.begin(), pending_.end(),
                                               [t](const RecordedPart& p) { return *p.at >= t; });
            for (auto it = split; it != pending_.end(); ++it) {
                if (!judge_.addPart(0, *it, t, tick_)) {
                    too_late_ += static_cast<std::uint64_t>(it->stats.events);
                }
                spent_.push_back(std::move(it->stats));
            }
            pending_.erase(split, pending_.end());
            evaluateAt(t);
            *next_ += duration(tick_);
        }
    }

    /// The intervals of the parts evaluated since the last call, for the recorder to reuse.
    std::vector<IntervalStats>& spent() { return spent_; }

    /// Past `to`: nothing more to evaluate.
    bool done() const { return to_ && next_ && *next_ > *to_; }
    std::uint64_t tooLate() const { return too_late_; }

private:
    static Config subConfig(const Config& config, const LogSourceConfig& source) {
        Config sub;
        sub.path = config.path;
        sub.agent = config.agent;
        sub.sources.push_back(source);
        for (const auto& rule : config.rules) {
            if (rule.source == source.name) {
                sub.rules.push_back(rule);
            }
        }
        sub.hooks = config.hooks;
        return sub;
    }

    static rules::TimePoint::duration duration(std::chrono::nanoseconds d) {
        return std::chrono::duration_cast<rules::TimePoint::duration>(d);
    }

    rules::TimePoint floorToTick(rules::TimePoint t) const {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
        const auto width = std::max<std::int64_t>(1, tick_.count());
        const std::int64_t floored = ns - (((ns % width) + width) % width);
        return rules::TimePoint{duration(std::chrono::nanoseconds{floored})};
    }

    std::size_t rowFor(std::size_t rule_index, const std::string& group) {
        const auto key = std::pair(rule_index, group);
        if (const auto it = rows_.find(key); it != rows_.end()) {
            return it->second;
        }
        const auto& rule = judge_.engine().rules()[rule_index];
        RuleTimeline header;
        header.rule = rule.name;
        header.group = group;
        header.severity = rules::toString(rule.severity);
        header.metric = rule.metric.text;
        header.condition = conditionText(rule);
        header.unit = valueUnitOf(rule);
        header.shape = valueShapeOf(rule);
        const std::size_t row = builder_.addRule(std::move(header));
        rows_.emplace(key, row);
        return row;
    }

    void evaluateAt(rules::TimePoint t) {
        const auto evaluation = judge_.evaluate(t);
        if (from_ && t < *from_) {
            return;  // warming the windows up
        }
        const auto& engine = judge_.engine();
        for (std::size_t i = 0; i < engine.rules().size(); ++i) {
            auto groups = engine.groupStatuses(i);
            if (groups.empty()) {
                groups.push_back(engine.status(i));
            }
            for (const auto& status : groups) {
                builder_.addPoint(rowFor(i, status.group),
                                  TimelinePoint{t, status.last.value, status.threshold, status.last.samples,
                                                status.state, status.baseline, status.mann_whitney});
            }
        }
        // State changes, each with the hooks its notification would have run.
        std::map<std::pair<std::size_t, std::string>, TimelineEvent> events;
        for (const auto& tr : evaluation.transitions) {
            TimelineEvent e;
            e.at = t;
            e.from = tr.from;
            e.to = tr.to;
            e.value = tr.metric.value;
            e.threshold = tr.threshold;
            e.samples = tr.metric.samples;
            e.baseline = tr.baseline;
            e.mann_whitney = tr.mann_whitney;
            events.emplace(std::pair(tr.rule_index, tr.group), std::move(e));
        }
        for (const auto& n : evaluation.notifications) {
            auto [it, fresh] = events.try_emplace(std::pair(n.rule_index, n.group));
            TimelineEvent& e = it->second;
            if (fresh) {  // a warning repeating while it fires
                e.at = t;
                e.from = rules::AlertState::Firing;
                e.to = rules::AlertState::Firing;
                e.value = n.metric.value;
                e.threshold = n.threshold;
                e.samples = n.metric.samples;
                e.baseline = n.baseline;
                e.mann_whitney = n.mann_whitney;
                e.note = "repeat";
            }
            e.hooks.insert(e.hooks.end(), n.hooks.begin(), n.hooks.end());
            std::string note;
            // A critical rule's resolve would run its notification hooks only.
            const auto& would_run = n.rule->severity == rules::Severity::Critical &&
                                            n.kind == rules::NotificationKind::Resolve
                                        ? n.rule->resolve_hooks
                                        : n.rule->hooks;
            if (n.dry_run && !would_run.empty()) {
                std::string would;
                for (const auto& h : would_run) {
                    would += (would.empty() ? "" : ", ") + h;
                }
                note = "dry run: would run " + would;
            } else if (n.latched && n.hooks.empty() && !n.rule->hooks.empty()) {
                note = "latched: the rollback already ran";
            } else if (n.inhibited) {
                note = "inhibited by a firing critical rule";
            }
            if (!note.empty()) {
                e.note = e.note.empty() ? note : e.note + "; " + note;
            }
        }
        // A timeline that starts (--from) in the middle of an incident says so, rather
        // than showing a firing rule without a state change.
        if (!recording_) {
            recording_ = true;
            for (std::size_t i = 0; i < engine.rules().size(); ++i) {
                for (const auto& status : engine.groupStatuses(i)) {
                    if (status.state == rules::AlertState::Inactive) {
                        continue;
                    }
                    auto [it, fresh] = events.try_emplace(std::pair(i, status.group));
                    if (fresh) {
                        TimelineEvent& e = it->second;
                        e.at = t;
                        e.from = status.state;
                        e.to = status.state;
                        e.value = status.last.value;
                        e.threshold = status.threshold;
                        e.samples = status.last.samples;
                        e.note = std::string("already ") + rules::toString(status.state) +
                                 " when the timeline starts" +
                                 (status.since ? " (since " + formatRfc3339(*status.since) + ")" : std::string());
                    }
                }
            }
        }
        for (auto& [key, e] : events) {
            builder_.addEvent(rowFor(key.first, key.second), std::move(e));
        }
    }

    Config config_;
    Judge judge_;
    TimelineBuilder& builder_;
    std::chrono::nanoseconds tick_;
    std::optional<rules::TimePoint> from_;
    std::optional<rules::TimePoint> to_;
    std::vector<RecordedPart> pending_;
    std::vector<IntervalStats> spent_;
    std::optional<rules::TimePoint> max_seen_;
    std::optional<rules::TimePoint> next_;
    std::map<std::pair<std::size_t, std::string>, std::size_t> rows_;
    std::uint64_t too_late_ = 0;
    bool recording_ = false;  // a tick has been recorded (past --from)
};

ReplaySourceResult replaySource(const LogSourceConfig& source, const std::vector<std::string>& files,
                                std::uint64_t total_bytes, std::size_t index, std::size_t count,
                                const ReplayOptions& options, TimelineRun* run, std::chrono::nanoseconds tick) {
    ReplaySourceResult out;
    out.name = source.name;
    out.files = files;
    out.settings = histogramSettingsFor(source);

    // The daemon's source, pointed at exactly these files from their first byte.
    LogSourceConfig cfg = source;
    cfg.paths.clear();
    for (const auto& f : files) {
        cfg.paths.push_back(globEscape(f));
    }
    cfg.exclude.clear();
    cfg.read_from = ReadFrom::Beginning;

    // With a timeline the lines' own timestamps are the clock.
    if (run != nullptr) {
        cfg.time = TimeMode::Event;
    }
    IntervalRecorder recorder(out.settings);
    LogTailer tailer(cfg, recorder);
    // Totals alone keep event time in buckets of ~100 years (the most that fits int64
    // nanoseconds), so a long log does not hold one dense histogram per second; the
    // timeline takes its parts tick by tick instead.
    tailer.setBucketWidth(run != nullptr ? tick : std::chrono::hours{24 * 365 * 100});
    // Every label set gets its own totals stream through the daemon's router seam, next
    // to the streams the rules' selections read.
    std::vector<LabelSet> sets;
    StreamRouter rules_router = run != nullptr ? run->router() : StreamRouter{};
    if (!source.labels.empty()) {
        for (const auto& l : source.labels) {
            out.label_names.push_back(l.name);
        }
        tailer.setRouter([&sets, rules_router](const LabelSet& labels, std::vector<std::uint32_t>& streams) {
            if (rules_router) {
                rules_router(labels, streams);
            }
            sets.push_back(labels);
            streams.push_back(kLabelSetStreamBase + static_cast<std::uint32_t>(sets.size() - 1));
        });
    }
    for (const LabelSet& set : sets) {
        out.label_sets.push_back(ReplayLabelSet{set, IntervalStats(out.settings)});
    }
    const auto fold = [&](std::vector<RecordedPart> parts) {
        for (auto& part : parts) {
            if (part.stream >= kLabelSetStreamBase) {
                const std::size_t i = part.stream - kLabelSetStreamBase;
                while (out.label_sets.size() <= i) {
                    out.label_sets.push_back(ReplayLabelSet{sets[out.label_sets.size()], IntervalStats(out.settings)});
                }
                IntervalStats& into = out.label_sets[i].stats;
                into.events += part.stats.events;
                into.errors += part.stats.errors;
                into.latency.add(part.stats.latency);
                continue;
            }
            if (part.stream == 0) {
                out.stats.events += part.stats.events;
                out.stats.errors += part.stats.errors;
                out.stats.latency.add(part.stats.latency);
            }
            if (run != nullptr) {
                run->add(std::move(part));
            }
        }
    };
    const auto start = SteadyClock::now();
    {
        ReplayProgress base;
        base.source = source.name;
        base.source_index = index;
        base.sources = count;
        base.bytes_total = total_bytes;
        ProgressTicker ticker(options, base, tailer.counters());
        // pollOnce() reads every file to its current end; a writer still appending (or
        // a future chunk cap in the tailer) means another pass, until nothing moves.
        std::uint64_t before = 0;
        if (run != nullptr) {
            // 4 MiB per file per step, then the ticks that are complete are evaluated.
            bool more = true;
            while (more && !run->done()) {
                before = tailer.counters().bytes.load();
                more = tailer.pollSome(16) || tailer.counters().bytes.load() != before;
                fold(recorder.takeParts());
                run->advance(false);
                recorder.recycle(run->spent());
            }
            run->advance(true);
        } else {
            do {
                before = tailer.counters().bytes.load();
                tailer.pollOnce();
            } while (tailer.counters().bytes.load() != before);
        }
    }
    fold(recorder.takeParts());
    out.wall_seconds = secondsSince(start);

    const auto& c = tailer.counters();
    out.bytes = c.bytes;
    out.lines = c.lines;
    out.bad_invalid_json = c.bad_invalid_json;
    out.bad_not_object = c.bad_not_object;
    out.bad_latency = c.bad_latency;
    out.bad_too_long = c.bad_too_long;
    out.bad_invalid_utf8 = c.bad_invalid_utf8;
    out.bad_timestamp = c.bad_timestamp;
    out.label_overflow = c.label_overflow;
    out.read_errors = c.read_errors;
    out.too_late = run != nullptr ? run->tooLate() : 0;
    for (const auto& f : files) {
        if (endsWithoutNewline(f) &&
            std::find(out.unterminated.begin(), out.unterminated.end(), f) == out.unterminated.end()) {
            out.unterminated.push_back(f);
        }
    }
    return out;
}

/// `v` with `decimals` digits after the point.
std::string fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

/// `v` with 6 significant digits, trailing zeros dropped.
std::string shortest(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

std::string formatLatency(double seconds) {
    return std::isnan(seconds) ? std::string("-") : rules::formatSeconds(seconds);
}

std::string formatBytes(std::uint64_t bytes) {
    const double b = static_cast<double>(bytes);
    if (b >= 1e9) {
        return fixed(b / 1e9, 2) + " GB";
    }
    if (b >= 1e6) {
        return fixed(b / 1e6, 1) + " MB";
    }
    if (b >= 1e3) {
        return fixed(b / 1e3, 1) + " kB";
    }
    return std::to_string(bytes) + " B";
}

void numberOrNull(JsonWriter& w, double seconds) {
    if (std::isnan(seconds)) {
        w.null();
    } else {
        w.value(seconds);
    }
}

struct QuantileName {
    double q;
    const char* text;
    const char* json;
};
constexpr QuantileName kQuantiles[] = {
    {0.50, "p50", "p50"}, {0.90, "p90", "p90"}, {0.99, "p99", "p99"}, {0.999, "p99.9", "p99_9"}};

constexpr std::size_t kTextLabelSets = 20;

double ratioOf(const IntervalStats& s) {
    return s.events <= 0 ? std::numeric_limits<double>::quiet_NaN()
                         : static_cast<double>(s.errors) / static_cast<double>(s.events);
}

double quantileOf(const IntervalStats& s, const HistogramSettings& settings, double q) {
    if (s.latency.totalCount() == 0) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    return static_cast<double>(s.latency.valueAtPercentile(q * 100.0)) / settings.units_per_second;
}

/// route="/a", variant="" -> route="/a" (empty values are absent, as in Prometheus).
std::string labelText(const std::vector<std::string>& names, const std::vector<std::string>& values) {
    std::string out;
    for (std::size_t i = 0; i < names.size() && i < values.size(); ++i) {
        if (values[i].empty()) {
            continue;
        }
        out += (out.empty() ? "" : ", ") + names[i] + "=\"" + values[i] + "\"";
    }
    return out.empty() ? std::string("(no labels)") : out;
}

}  // namespace

double ReplaySourceResult::errorRatio() const {
    if (stats.events <= 0) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    return static_cast<double>(stats.errors) / static_cast<double>(stats.events);
}

double ReplaySourceResult::quantileSeconds(double q) const {
    if (stats.latency.totalCount() == 0) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    // The same reading as the windows the rules see (WindowView::quantileSeconds).
    return static_cast<double>(stats.latency.valueAtPercentile(q * 100.0)) / settings.units_per_second;
}

double ReplaySourceResult::maxSeconds() const {
    if (stats.latency.totalCount() == 0) {
        return std::numeric_limits<double>::quiet_NaN();
    }
    return static_cast<double>(stats.latency.max()) / settings.units_per_second;
}

double ReplaySourceResult::linesPerSecond() const {
    return static_cast<double>(lines) / std::max(wall_seconds, 1e-9);
}

ReplayResult replayFiles(const Config& config, const std::vector<std::string>& files, const ReplayOptions& options) {
    ReplayResult result;
    std::vector<const LogSourceConfig*> selected;
    if (options.sources.empty()) {
        for (const auto& s : config.sources) {
            selected.push_back(&s);
        }
        if (selected.empty()) {
            result.usage_errors.push_back(config.path + ": the configuration has no [[source]] to replay through");
        }
    } else {
        for (const auto& name : options.sources) {
            const LogSourceConfig* s = config.findSource(name);
            if (s == nullptr) {
                std::string known;
                for (const auto& c : config.sources) {
                    known += (known.empty() ? "" : ", ") + c.name;
                }
                result.usage_errors.push_back("unknown source '" + name + "' (the configuration has: " +
                                              (known.empty() ? std::string("none") : known) + ")");
            } else if (std::find(selected.begin(), selected.end(), s) == selected.end()) {
                selected.push_back(s);
            }
        }
    }
    if (files.empty()) {
        result.usage_errors.emplace_back("no log files given");
    }

    std::uint64_t total_bytes = 0;
    std::vector<FileInfo> seen;
    std::vector<std::string> unique_files;
    for (const auto& path : files) {
        FileInfo info;
        const std::string reason = checkReadable(path, info);
        if (!reason.empty()) {
            result.file_errors.push_back(path + ": " + reason);
            continue;
        }
        // The tailer follows a file once however often it is named; so does replay.
        const bool dup = std::any_of(seen.begin(), seen.end(),
                                     [&](const FileInfo& f) { return f.dev == info.dev && f.ino == info.ino; });
        if (!dup) {
            total_bytes += info.size;
            seen.push_back(info);
            unique_files.push_back(path);
        }
    }
    if (!result.ok()) {
        return result;
    }

    const auto start = SteadyClock::now();
    TimelineBuilder builder(config.path);
    for (std::size_t i = 0; i < selected.size(); ++i) {
        const LogSourceConfig& source = *selected[i];
        const bool has_rules = std::any_of(config.rules.begin(), config.rules.end(),
                                           [&](const rules::RuleSpec& r) { return r.source == source.name; });
        std::optional<TimelineRun> run;
        if (options.timeline && has_rules) {
            if (source.timestamp.empty()) {
                result.timeline_notes.push_back("source " + source.name +
                                                " has no `timestamp` field: its rules are not in the timeline "
                                                "(set timestamp = \"<field>\" to replay them)");
            } else {
                run.emplace(config, source, builder, options);
            }
        }
        result.sources.push_back(replaySource(source, unique_files, total_bytes, i, selected.size(), options,
                                              run ? &*run : nullptr, config.agent.tick));
    }
    result.timeline = builder.take();
    result.wall_seconds = secondsSince(start);
    return result;
}

std::string renderReplayText(const ReplayResult& result) {
    std::string out;
    for (const auto& s : result.sources) {
        out += "source " + s.name + ": " + std::to_string(s.files.size()) + " file(s), " + std::to_string(s.lines) +
               " lines, " + formatBytes(s.bytes) + " in " + fixed(s.wall_seconds, 3) + " s (" +
               fixed(s.linesPerSecond(), 0) + " lines/s, " +
               formatBytes(static_cast<std::uint64_t>(static_cast<double>(s.bytes) / std::max(s.wall_seconds, 1e-9))) +
               "/s)\n";
        out += "  bad lines: " + std::to_string(s.badTotal()) +
               " (invalid_json " + std::to_string(s.bad_invalid_json) +
               ", not_an_object " + std::to_string(s.bad_not_object) +
               ", bad_latency " + std::to_string(s.bad_latency) +
               ", too_long " + std::to_string(s.bad_too_long) +
               ", invalid_utf8 " + std::to_string(s.bad_invalid_utf8) +
               ", bad_timestamp " + std::to_string(s.bad_timestamp) + ")\n";
        out += "  events: " + std::to_string(s.events()) + ", errors: " + std::to_string(s.errors()) +
               ", error ratio: ";
        const double ratio = s.errorRatio();
        out += std::isnan(ratio) ? std::string("-") : shortest(ratio) + " (" + fixed(ratio * 100, 2) + "%)";
        out += "\n";
        if (s.latencyCount() == 0) {
            out += "  latency: no latencies recorded\n";
        } else {
            out += "  latency (" + std::to_string(s.latencyCount()) + " events):";
            for (const auto& q : kQuantiles) {
                out += std::string(" ") + q.text + " " + formatLatency(s.quantileSeconds(q.q)) + ",";
            }
            out += " max " + formatLatency(s.maxSeconds()) + "\n";
        }
        if (!s.label_names.empty()) {
            std::vector<const ReplayLabelSet*> order;
            for (const auto& set : s.label_sets) {
                order.push_back(&set);
            }
            std::stable_sort(order.begin(), order.end(), [](const ReplayLabelSet* a, const ReplayLabelSet* b) {
                return a->stats.events > b->stats.events;
            });
            out += "  label sets: " + std::to_string(s.label_sets.size()) +
                   " (lines over max_label_sets, in __other__: " + std::to_string(s.label_overflow) + ")\n";
            for (std::size_t i = 0; i < order.size() && i < kTextLabelSets; ++i) {
                const IntervalStats& st = order[i]->stats;
                const double set_ratio = ratioOf(st);
                out += "    {" + labelText(s.label_names, order[i]->values) + "}: events " + std::to_string(st.events) +
                       ", error ratio " + (std::isnan(set_ratio) ? std::string("-") : shortest(set_ratio)) + ", p99 " +
                       formatLatency(quantileOf(st, s.settings, 0.99)) + "\n";
            }
            if (order.size() > kTextLabelSets) {
                out += "    ... and " + std::to_string(order.size() - kTextLabelSets) + " more\n";
            }
        }
        if (s.read_errors > 0) {
            out += "  read errors: " + std::to_string(s.read_errors) + " (see the messages above)\n";
        }
        for (const auto& f : s.unterminated) {
            out += "  note: the last line of " + f + " has no newline; like the daemon, replay did not count it\n";
        }
        if (s.too_late > 0) {
            out += "  too late: " + std::to_string(s.too_late) +
                   " events stamped more than `lateness` before the replay clock (dropped, as the daemon would)\n";
        }
    }
    if (!result.timeline.rules.empty()) {
        out += "\n" + renderTimelineText(result.timeline);
    }
    for (const auto& note : result.timeline_notes) {
        out += "note: " + note + "\n";
    }
    return out;
}

std::string renderReplayJson(const ReplayResult& result) {
    JsonWriter w;
    w.beginObject();
    w.key("wall_seconds").value(result.wall_seconds);
    w.key("sources").beginArray();
    for (const auto& s : result.sources) {
        w.beginObject();
        w.key("name").value(s.name);
        w.key("files").beginArray();
        for (const auto& f : s.files) {
            w.value(f);
        }
        w.endArray();
        w.key("bytes").value(s.bytes);
        w.key("lines").value(s.lines);
        w.key("bad_lines").beginObject();
        w.key("total").value(s.badTotal());
        w.key("invalid_json").value(s.bad_invalid_json);
        w.key("not_an_object").value(s.bad_not_object);
        w.key("bad_latency").value(s.bad_latency);
        w.key("too_long").value(s.bad_too_long);
        w.key("invalid_utf8").value(s.bad_invalid_utf8);
        w.key("bad_timestamp").value(s.bad_timestamp);
        w.endObject();
        w.key("read_errors").value(s.read_errors);
        w.key("unterminated_files").beginArray();
        for (const auto& f : s.unterminated) {
            w.value(f);
        }
        w.endArray();
        w.key("events").value(s.events());
        w.key("errors").value(s.errors());
        w.key("error_ratio");
        numberOrNull(w, s.errorRatio());
        w.key("latency_seconds").beginObject();
        w.key("count").value(s.latencyCount());
        for (const auto& q : kQuantiles) {
            w.key(q.json);
            numberOrNull(w, s.quantileSeconds(q.q));
        }
        w.key("max");
        numberOrNull(w, s.maxSeconds());
        w.endObject();
        if (!s.label_names.empty()) {
            w.key("label_overflow").value(s.label_overflow);
            w.key("label_sets").beginArray();
            for (const auto& set : s.label_sets) {
                w.beginObject();
                w.key("labels").beginObject();
                for (std::size_t i = 0; i < s.label_names.size() && i < set.values.size(); ++i) {
                    w.key(s.label_names[i]).value(set.values[i]);
                }
                w.endObject();
                w.key("events").value(set.stats.events);
                w.key("errors").value(set.stats.errors);
                w.key("error_ratio");
                numberOrNull(w, ratioOf(set.stats));
                w.key("latency_seconds").beginObject();
                w.key("count").value(set.stats.latency.totalCount());
                for (const auto& q : kQuantiles) {
                    w.key(q.json);
                    numberOrNull(w, quantileOf(set.stats, s.settings, q.q));
                }
                w.endObject();
                w.endObject();
            }
            w.endArray();
        }
        w.key("wall_seconds").value(s.wall_seconds);
        w.key("lines_per_second").value(s.linesPerSecond());
        w.key("bytes_per_second").value(static_cast<double>(s.bytes) / std::max(s.wall_seconds, 1e-9));
        w.key("too_late").value(s.too_late);
        w.endObject();
    }
    w.endArray();
    w.key("timeline");
    writeTimelineJson(w, result.timeline, true);
    w.key("timeline_notes").beginArray();
    for (const auto& note : result.timeline_notes) {
        w.value(note);
    }
    w.endArray();
    w.endObject();
    return w.str() + "\n";
}

std::string formatReplayProgress(const ReplayProgress& p) {
    std::string out = "replay";
    if (p.sources > 1) {
        out += " " + std::to_string(p.source_index + 1) + "/" + std::to_string(p.sources);
    }
    out += " " + p.source + ": " + formatBytes(p.bytes_read) + " / " + formatBytes(p.bytes_total);
    if (p.bytes_total > 0) {
        out += " (" + fixed(100.0 * static_cast<double>(p.bytes_read) / static_cast<double>(p.bytes_total), 0) + "%)";
    }
    out += ", " + std::to_string(p.lines) + " lines, " +
           fixed(static_cast<double>(p.lines) / std::max(p.seconds, 1e-9), 0) + " lines/s";
    return out;
}

}  // namespace rollguard::agent
