#include "rollguard/agent/daemon.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "rollguard/agent/checkpoint.h"
#include "rollguard/rules/duration.h"

namespace rollguard::agent {

namespace {

std::string hostName(const AgentSettings& settings) {
    if (!settings.hostname.empty()) {
        return settings.hostname;
    }
    char buf[256] = {};
    if (::gethostname(buf, sizeof(buf) - 1) != 0) {
        return "unknown";
    }
    return buf;
}

std::string formatNumber(double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.4g", v);
    return buf;
}

}  // namespace

std::string formatMetricValue(const rules::MetricSpec& metric, double value) {
    if (metric.isLatency()) {
        return rules::formatSeconds(value);
    }
    return formatNumber(value);
}

struct Daemon::SourceState {
    SourceState(const LogSourceConfig& cfg, const HistogramSettings& settings, std::chrono::nanoseconds tick)
        : config(cfg), recorder(settings), series(settings), tailer(cfg, recorder) {
        tailer.setBucketWidth(tick);
    }

    LogSourceConfig config;
    IntervalRecorder recorder;
    Series series;
    LogTailer tailer;
    SourcePositions positions;  // matching exactly what `series` holds
};

Daemon::Daemon(Config config, const rules::Clock& clock)
    : config_(std::move(config)), clock_(clock), host_(hostName(config_.agent)), engine_(config_.rules) {
    for (const auto& source : config_.sources) {
        source_index_.emplace(source.name, sources_.size());
        sources_.push_back(std::make_unique<SourceState>(source, histogramSettingsFor(source), config_.agent.tick));
    }
    // Every rule reads one window of its source's series; equal windows are shared.
    for (const auto& rule : config_.rules) {
        auto it = source_index_.find(rule.source);
        rule_windows_.push_back(it == source_index_.end()
                                    ? std::nullopt
                                    : std::optional(std::pair(it->second,
                                                              sources_[it->second]->series.addWindow(rule.window))));
    }

    if (!config_.agent.state_dir.empty()) {
        checkpoint_path_ = config_.agent.state_dir + "/checkpoint";
        restoreCheckpoint();
    }

    hooks_ = std::make_unique<HookRunner>(
        [this](const std::string& hook, const BreachEvent& event, const HookResult& result) {
            onHookResult(hook, event, result);
        });
    for (const auto& hook : config_.hooks) {
        hooks_->add(makeHook(hook));
    }

    snapshot_.config_path = config_.path;
    snapshot_.tick = config_.agent.tick;
    snapshot_.started = clock_.now();
    snapshot_.dry_run = config_.agent.dry_run;
    for (const auto& rule : config_.rules) {
        StatusSnapshot::Rule r;
        r.name = rule.name;
        r.severity = rules::toString(rule.severity);
        r.source = rule.source;
        r.metric = rule.metric.text;
        r.comparison = rules::toString(rule.comparison);
        r.threshold = rule.threshold;
        r.window = rule.window;
        r.for_ = rule.for_;
        snapshot_.rules.push_back(std::move(r));
    }
    for (const auto& hook : config_.hooks) {
        StatusSnapshot::Hook h;
        h.name = hook.name;
        h.type = toString(hook.type);
        snapshot_.hooks.push_back(std::move(h));
    }
    for (const auto& source : sources_) {
        StatusSnapshot::Source s;
        s.name = source->config.name;
        snapshot_.sources.push_back(std::move(s));
    }
}

Daemon::~Daemon() {
    stop();
}

void Daemon::start() {
    for (auto& source : sources_) {
        source->tailer.start();
        spdlog::info("source {}: following {} file(s) matching {}", source->config.name,
                     source->tailer.files().size(), fmt::join(source->config.paths, ", "));
    }
    started_ = true;
}

void Daemon::tick() {
    const auto now = clock_.now();
    collect(now);

    const auto& rule_specs = engine_.rules();
    auto lookup = [&](const rules::RuleSpec& rule) -> rules::SeriesStats {
        const auto index = static_cast<std::size_t>(&rule - rule_specs.data());
        if (index < rule_windows_.size() && rule_windows_[index]) {
            const auto [source, window] = *rule_windows_[index];
            return sources_[source]->series.window(window).asSeriesStats();
        }
        return {};
    };
    const auto transitions = engine_.evaluate(now, lookup);

    std::uint64_t new_incidents = 0;
    for (const auto& t : transitions) {
        const auto& rule = *t.rule;
        const std::string value =
            t.metric.value ? formatMetricValue(rule.metric, *t.metric.value) : std::string("no data");
        const std::string message =
            fmt::format("rule {} ({}): {} -> {}: {}={} {} {} ({} samples, window {}, for {})", rule.name,
                        rules::toString(rule.severity), rules::toString(t.from), rules::toString(t.to),
                        rule.metric.text, value, rules::toString(rule.comparison),
                        formatMetricValue(rule.metric, rule.threshold), t.metric.samples,
                        rules::formatDuration(rule.window), rules::formatDuration(rule.for_));
        if (t.to == rules::AlertState::Firing) {
            spdlog::warn("{}", message);
            if (rule.severity == rules::Severity::Critical) {
                ++new_incidents;
            }
        } else {
            spdlog::info("{}", message);
        }
        if (!t.hooks_to_run.empty()) {
            BreachEvent event = makeEvent(t);
            if (config_.agent.dry_run) {
                spdlog::warn("rule {}: dry run: would run hooks [{}]", rule.name, fmt::join(t.hooks_to_run, ", "));
            } else {
                spdlog::info("rule {}: running hooks [{}]", rule.name, fmt::join(t.hooks_to_run, ", "));
                hooks_->enqueue(t.hooks_to_run, std::move(event));
            }
        } else if (t.to == rules::AlertState::Firing && t.dry_run && !rule.hooks.empty()) {
            spdlog::warn("rule {}: dry run rule: hooks [{}] not run", rule.name, fmt::join(rule.hooks, ", "));
        } else if (t.to == rules::AlertState::Firing && rule.severity == rules::Severity::Critical &&
                   !rule.hooks.empty()) {
            spdlog::warn("rule {}: rollback already ran for this incident (latched); hooks not run again",
                         rule.name);
        }
    }

    if (!checkpoint_path_.empty() && checkpoint_dirty_ &&
        std::chrono::steady_clock::now() - last_checkpoint_ >= config_.agent.checkpoint_interval) {
        writeCheckpointNow(now);
    }

    std::lock_guard lock(mutex_);
    snapshot_.last_tick = now;
    ++snapshot_.ticks;
    snapshot_.incidents += new_incidents;
    for (std::size_t i = 0; i < rule_specs.size(); ++i) {
        const auto& status = engine_.status(i);
        auto& r = snapshot_.rules[i];
        r.state = status.state;
        r.value = status.last.value;
        r.samples = status.last.samples;
        r.since = status.since;
        r.last_evaluation = status.last_evaluation;
        r.latched = status.latched;
    }
    for (std::size_t i = 0; i < sources_.size(); ++i) {
        const auto& c = sources_[i]->tailer.counters();
        auto& s = snapshot_.sources[i];
        s.files = sources_[i]->tailer.files();
        s.lines = c.lines;
        s.bytes = c.bytes;
        s.bad_invalid_json = c.bad_invalid_json;
        s.bad_not_object = c.bad_not_object;
        s.bad_latency = c.bad_latency;
        s.bad_too_long = c.bad_too_long;
        s.bad_invalid_utf8 = c.bad_invalid_utf8;
        s.bad_timestamp = c.bad_timestamp;
        s.label_sets = sources_[i]->tailer.labelSets().size();
        s.label_overflow = c.label_overflow;
        s.too_late = c.too_late;
        s.rotations = c.rotations;
        s.truncations = c.truncations;
        s.read_errors = c.read_errors;
        s.identity_changes = c.identity_changes;
        s.window_bytes = sources_[i]->series.memoryBytes();
    }
}

void Daemon::pollSources() {
    for (auto& source : sources_) {
        source->tailer.pollOnce();
    }
}

void Daemon::run() {
    using steady = std::chrono::steady_clock;
    auto next = steady::now();
    std::unique_lock lock(stop_mutex_);
    while (!stop_requested_) {
        lock.unlock();
        tick();
        lock.lock();
        next += std::chrono::duration_cast<steady::duration>(config_.agent.tick);
        // After a stall (suspend, overload) tick again at once rather than in a burst.
        if (next < steady::now()) {
            next = steady::now();
        }
        stop_cv_.wait_until(lock, next, [this] { return stop_requested_; });
    }
}

void Daemon::requestStop() {
    {
        std::lock_guard lock(stop_mutex_);
        stop_requested_ = true;
    }
    stop_cv_.notify_all();
}

void Daemon::stop() {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    for (auto& source : sources_) {
        source->tailer.stop();
    }
    // What the sources read after the last tick goes into the final checkpoint.
    if (!checkpoint_path_.empty()) {
        const auto now = clock_.now();
        collect(now);
        if (checkpoint_dirty_) {
            writeCheckpointNow(now);
        }
    }
    if (hooks_) {
        hooks_->stop();
    }
}

void Daemon::collect(rules::TimePoint now) {
    for (auto& source : sources_) {
        const SourcePositions before = checkpoint_path_.empty() ? SourcePositions{} : source->positions;
        std::vector<RecordedPart> parts = source->recorder.takeParts(&source->positions);
        // Without new data or positions a checkpoint would say the same thing again:
        // slots expiring with time are replayed identically after a restore.
        if (!parts.empty() || (!checkpoint_path_.empty() && source->positions != before)) {
            checkpoint_dirty_ = true;
        }
        source->series.advance(now);
        std::uint64_t too_late = 0;
        for (const auto& part : parts) {
            if (part.stream != 0) {
                continue;  // no rule selects label sets yet (#5 adds streams)
            }
            if (!part.at) {
                source->series.add(now, part.stats);
                continue;
            }
            // Lateness is decided here, where the clock is: a bucket that ended more
            // than `lateness` ago is dropped; one stamped in the future is recorded now.
            const rules::TimePoint bucket_end =
                *part.at + std::chrono::duration_cast<rules::TimePoint::duration>(config_.agent.tick);
            if (bucket_end < now - std::chrono::duration_cast<rules::TimePoint::duration>(source->config.lateness)) {
                too_late += static_cast<std::uint64_t>(part.stats.events);
                continue;
            }
            source->series.addAt(std::min(*part.at, now), part.stats);
        }
        if (too_late > 0) {
            source->tailer.counters().too_late.fetch_add(too_late, std::memory_order_relaxed);
        }
    }
}

void Daemon::restoreCheckpoint() {
    std::error_code ec;
    // A directory we create holds state nobody else should read; an existing one (e.g.
    // systemd's StateDirectory=) keeps the mode it was given.
    if (!std::filesystem::exists(config_.agent.state_dir, ec) &&
        std::filesystem::create_directories(config_.agent.state_dir, ec)) {
        std::filesystem::permissions(config_.agent.state_dir, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::replace, ec);
    }
    if (ec) {
        spdlog::error("state_dir {}: {}; running without checkpoints", config_.agent.state_dir, ec.message());
        checkpoint_path_.clear();
        return;
    }
    std::string why;
    const auto checkpoint = readCheckpoint(checkpoint_path_, why);
    if (!checkpoint) {
        if (!why.empty()) {
            spdlog::warn("ignoring checkpoint: {}; sources start per read_from", why);
        }
        return;
    }
    for (auto& source : sources_) {
        const SourceCheckpoint* saved = checkpoint->find(source->config.name);
        if (saved == nullptr) {
            continue;
        }
        source->tailer.restore(saved->positions);
        source->positions = saved->positions;
        if (source->series.restore(saved->series)) {
            spdlog::info("source {}: resuming {} file(s) from the checkpoint; windows restored", source->config.name,
                         saved->positions.size());
        } else {
            spdlog::warn("source {}: resuming {} file(s) from the checkpoint; window state not restored "
                         "(its histogram settings changed)",
                         source->config.name, saved->positions.size());
        }
    }
}

void Daemon::writeCheckpointNow(rules::TimePoint now) {
    Checkpoint checkpoint;
    for (const auto& source : sources_) {
        checkpoint.sources.push_back(SourceCheckpoint{source->config.name, source->positions, source->series.serialize()});
    }
    last_checkpoint_ = std::chrono::steady_clock::now();
    const auto err = writeCheckpoint(checkpoint_path_, checkpoint);
    checkpoint_dirty_ = static_cast<bool>(err);  // a failed write is retried
    std::lock_guard lock(mutex_);
    if (err) {
        // Logged on the first failure of a run of failures, not on every tick.
        if (snapshot_.checkpoint_failures == 0 || snapshot_.last_checkpoint) {
            spdlog::error("checkpoint: {}", *err);
        }
        ++snapshot_.checkpoint_failures;
        snapshot_.last_checkpoint.reset();
        return;
    }
    ++snapshot_.checkpoints;
    snapshot_.last_checkpoint = now;
}

void Daemon::waitForHooks() {
    hooks_->waitIdle();
}

StatusSnapshot Daemon::snapshot() const {
    std::lock_guard lock(mutex_);
    return snapshot_;
}

BreachEvent Daemon::makeEvent(const rules::Transition& t) const {
    const auto& rule = *t.rule;
    BreachEvent e;
    e.rule = rule.name;
    e.severity = rules::toString(rule.severity);
    e.state = "firing";
    e.source = rule.source;
    e.metric = rule.metric.text;
    e.value = t.metric.value.value_or(std::nan(""));
    e.threshold = rule.threshold;
    e.comparison = rules::toString(rule.comparison);
    e.samples = t.metric.samples;
    e.window = rule.window;
    e.for_ = rule.for_;
    e.since = t.since;
    e.fired_at = t.at;
    e.host = host_;
    e.description = rule.description;
    e.summary = fmt::format("{} {} {} {} over {} ({} samples)", rule.metric.text,
                            t.metric.value ? formatMetricValue(rule.metric, *t.metric.value) : std::string("n/a"),
                            rule.comparison == rules::Comparison::Above ? ">" : "<",
                            formatMetricValue(rule.metric, rule.threshold), rules::formatDuration(rule.window),
                            t.metric.samples);
    return e;
}

void Daemon::onHookResult(const std::string& hook, const BreachEvent& event, const HookResult& result) {
    if (result.ok) {
        spdlog::info("hook {} (rule {}): ok in {}ms: {}", hook, event.rule, result.duration.count(), result.message);
    } else {
        spdlog::error("hook {} (rule {}): FAILED after {}ms ({} attempt(s)): {}", hook, event.rule,
                      result.duration.count(), result.attempts, result.message);
    }
    std::lock_guard lock(mutex_);
    for (auto& h : snapshot_.hooks) {
        if (h.name == hook) {
            (result.ok ? h.ok : h.failed) += 1;
            h.last_duration_seconds = static_cast<double>(result.duration.count()) / 1000.0;
            h.last_message = result.message;
            h.last_run = clock_.now();
        }
    }
}

}  // namespace rollguard::agent
