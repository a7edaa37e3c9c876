#include "rollguard/agent/daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "rollguard/agent/checkpoint.h"
#include "rollguard/agent/rule_value.h"
#include "util/atomic_file.h"
#include "util/process_memory.h"
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
        : config(cfg), recorder(settings), tailer(cfg, recorder) {
        tailer.setBucketWidth(tick);
    }

    LogSourceConfig config;
    IntervalRecorder recorder;
    LogTailer tailer;
    SourcePositions positions;  // matching exactly what the judge's streams hold
};

Daemon::Daemon(Config config, const rules::Clock& clock, std::optional<Handoff> handoff)
    : config_(std::move(config)), clock_(clock), schedule_(config_.agent.tick, evaluationInterval(config_.agent)),
      host_(hostName(config_.agent)), judge_(std::make_unique<Judge>(config_, evaluationInterval(config_.agent))),
      scrapes_(std::make_unique<ScrapeLoop>(config_, *judge_, host_)) {
    for (const auto& source : config_.sources) {
        // A one-minute window of every source with latency, for /metrics and the status.
        latency_windows_.push_back(source.latency ? std::optional(judge_->series(sources_.size()).addWindow(
                                                        std::chrono::minutes{1}))
                                                  : std::nullopt);
        sources_.push_back(std::make_unique<SourceState>(source, histogramSettingsFor(source), config_.agent.tick));
        // Label sets go to the streams of the rules' selections.
        sources_.back()->tailer.setRouter(judge_->routerFor(sources_.size() - 1));
    }

    if (!config_.agent.state_dir.empty()) {
        checkpoint_path_ = config_.agent.state_dir + "/checkpoint";
        rules_state_path_ = config_.agent.state_dir + "/rules.state";
        prepareStateDir();
        if (!checkpoint_path_.empty()) {
            checkpoint_store_ = std::make_unique<CheckpointStore>(checkpoint_path_);
        }
    }
    if (handoff) {
        // A reload: the previous daemon's state, in memory (with or without state_dir).
        applyRulesState(handoff->rules_state, "the previous configuration");
        applyCheckpoint(handoff->checkpoint);
    } else if (!rules_state_path_.empty()) {
        restoreRulesState();
        restoreCheckpoint();
    }
    if (config_.rollout) {
        if (!config_.agent.state_dir.empty() && !rules_state_path_.empty()) {
            rollout_path_ = config_.agent.state_dir + "/rollout.json";
        }
        rollout_ = std::make_unique<RolloutController>(*config_.rollout);
        restoreRollout(handoff);
    }

    hooks_ = std::make_unique<HookRunner>(
        [this](const std::string& hook, const BreachEvent& event, const HookResult& result) {
            onHookResult(hook, event, result);
        },
        [this](const std::string& hook, const BreachEvent& event) { onHookStart(hook, event); });
    for (const auto& hook : config_.hooks) {
        hooks_->add(makeHook(hook), hook.run_if);
    }
    if (handoff) {
        carryFiringAlerts(handoff->firing_alerts);
    }

    snapshot_.config_path = config_.path;
    snapshot_.tick = config_.agent.tick;
    snapshot_.started = clock_.now();
    snapshot_.dry_run = config_.agent.dry_run;
    refreshRuleSnapshot();
    const auto gating = gatingHooks(config_, config_.agent.readiness_preflight);
    for (const auto& hook : config_.hooks) {
        StatusSnapshot::Hook h;
        h.name = hook.name;
        h.type = toString(hook.type);
        h.gating = std::find(gating.begin(), gating.end(), hook.name) != gating.end();
        snapshot_.hooks.push_back(std::move(h));
    }
    if (handoff && !handoff->preflight.empty()) {
        std::size_t seeded = 0;
        for (auto& h : snapshot_.hooks) {
            for (const auto& previous : handoff->preflight) {
                if (previous.hook == h.name) {
                    h.ready = previous.ready;
                    h.problems = previous.problems;
                    ++seeded;
                }
            }
        }
        // Every hook has a result to show until the first pass replaces it.
        preflight_seeded_ = seeded == snapshot_.hooks.size();
    }
    for (const auto& source : sources_) {
        StatusSnapshot::Source s;
        s.name = source->config.name;
        snapshot_.sources.push_back(std::move(s));
    }
    snapshot_.scrapes = scrapes_->status();
    refreshRolloutSnapshot();
    if (!rules_state_path_.empty()) {
        incident_log_ = std::make_unique<IncidentLog>(config_.agent.state_dir, config_.agent.max_incidents);
        for (const auto& record : incident_log_->list()) {
            noteIncident(record);  // the last ones on disk, oldest first
        }
        resumeIncidents();
    }
}

Daemon::~Daemon() {
    stop();
}

void Daemon::start() {
    // On its own thread from the start: a host name lookup may take up to 2 s per hook,
    // which must hold neither the first tick nor /healthz. Until the first pass is done
    // the gating hooks count as not checked (notReadyReasons).
    if (!config_.hooks.empty()) {
        {
            std::lock_guard lock(mutex_);
            snapshot_.preflight_checked = preflight_seeded_;
        }
        preflight_thread_ = std::thread([this] {
            runPreflight(true);
            const auto every = config_.agent.preflight_interval;
            if (every.count() <= 0) {
                return;
            }
            std::unique_lock lock(preflight_mutex_);
            while (!preflight_cv_.wait_for(lock, every, [this] { return preflight_stop_; })) {
                lock.unlock();
                runPreflight(false);
                lock.lock();
            }
        });
    }
    for (auto& source : sources_) {
        source->tailer.start();
        spdlog::info("source {}: following {} file(s) matching {}", source->config.name,
                     source->tailer.files().size(), fmt::join(source->config.paths, ", "));
    }
    for (const auto& scrape : config_.scrapes) {
        spdlog::info("source {}: {} {} every {}", scrape.name, toString(scrape.type),
                     scrape.type == ScrapeType::Process ? "processes"
                                                        : (scrape.url.empty() ? scrape.path : scrape.url),
                     rules::formatDuration(scrape.interval));
    }
    scrapes_->start();
    started_ = true;
}

void Daemon::tick() {
    const auto now = schedule_.next(clock_.now());
    // Rules are evaluated every evaluation interval, on what arrived until then; the rest
    // of the bookkeeping (status snapshot, the rollout's schedule) once a tick, so
    // evaluating ten times a second costs little more than once.
    const bool on_tick = schedule_.onTick();
    applyPendingRearm();
    collect(now, on_tick);

    const auto evaluation = judge_->evaluate(now, on_tick);
    std::uint64_t new_incidents = 0;
    for (const auto& t : evaluation.transitions) {
        const auto& rule = *t.rule;
        const std::string name = t.group.empty() ? rule.name : rule.name + " {" + t.group + "}";
        const ValueShape shape = valueShapeOf(rule);
        std::string what;
        if (shape.kind == ValueKind::Absolute) {
            what = fmt::format("{}={} {} {}", rule.metric.text,
                               t.metric.value ? formatMetricValue(rule.metric, *t.metric.value) : "no data",
                               rules::toString(rule.comparison),
                               t.threshold ? formatMetricValue(rule.metric, *t.threshold) : "(no baseline yet)");
        } else {
            // A baseline-relative value or a comparison's effect: the metric's unit alone
            // would misread it (an effect of 0.133 is not 133ms).
            what = describeRuleValue(shape, ValueReading{t.metric.value, t.threshold, t.baseline, t.mann_whitney});
        }
        const std::string message =
            fmt::format("rule {} ({}): {} -> {}: {} ({} samples, window {}, for {}){}", name,
                        rules::toString(rule.severity), rules::toString(t.from), rules::toString(t.to), what,
                        t.metric.samples, rules::formatDuration(rule.window), rules::formatDuration(rule.for_),
                        t.dry_run ? " [dry run]" : (t.inhibited ? " [inhibited]" : ""));
        if (t.to == rules::AlertState::Firing) {
            spdlog::warn("{}", message);
            if (rule.severity == rules::Severity::Critical && !t.dry_run) {
                ++new_incidents;
            }
        } else {
            spdlog::info("{}", message);
        }
    }
    // The latch and timers are on disk before any hook runs: a crash mid-rollback does
    // not roll back twice after the restart.
    if (!evaluation.transitions.empty() || !evaluation.notifications.empty()) {
        writeRulesState();
    }
    for (const auto& n : evaluation.notifications) {
        const auto& rule = *n.rule;
        const std::string name = n.group.empty() ? rule.name : rule.name + " {" + n.group + "}";
        if (n.hooks.empty()) {
            // A critical rule's resolve would run its notification hooks only.
            const auto& would = rule.severity == rules::Severity::Critical && n.kind == rules::NotificationKind::Resolve
                                    ? rule.resolve_hooks
                                    : rule.hooks;
            if (n.dry_run && !would.empty()) {
                spdlog::warn("rule {}: dry run: would run hooks [{}] ({})", name, fmt::join(would, ", "),
                             rules::toString(n.kind));
            } else if (n.latched && n.kind == rules::NotificationKind::Fire && !rule.hooks.empty()) {
                spdlog::warn("rule {}: rollback already ran for this incident (latched); hooks not run again", name);
            } else if (n.inhibited) {
                spdlog::info("rule {}: {} inhibited by a firing critical rule", name, rules::toString(n.kind));
            }
            continue;
        }
        BreachEvent event = makeEvent(n);
        if (!config_.agent.dry_run && rule.severity == rules::Severity::Critical &&
            n.kind == rules::NotificationKind::Fire) {
            event = openIncident(n, std::move(event));
        }
        if (config_.agent.dry_run) {
            spdlog::warn("rule {}: dry run: would run hooks [{}] ({})", name, fmt::join(n.hooks, ", "),
                         rules::toString(n.kind));
        } else {
            spdlog::info("rule {}: running hooks [{}] ({})", name, fmt::join(n.hooks, ", "), rules::toString(n.kind));
            hooks_->enqueue(n.hooks, std::move(event));
        }
    }
    const bool changed = !evaluation.transitions.empty() || !evaluation.notifications.empty();
    // The windows that decided go to disk with the rules' state (written above), the
    // hooks already on their way: restored after a crash, windows older than the state
    // would resolve the rule again.
    // The checkpoint is looked at every evaluation, not only on ticks: a tick whose
    // clock reads a little early would otherwise find the interval not yet over and
    // leave it to the next tick, writing every two intervals.
    if (!checkpoint_path_.empty() && checkpoint_dirty_ &&
        (changed || std::chrono::steady_clock::now() - last_checkpoint_ >= config_.agent.checkpoint_interval)) {
        writeCheckpointNow(now);
    }
    if (!on_tick) {
        // A rule that changed state between ticks moves the rollout (a firing critical
        // steps it back) and shows in the status at once.
        if (changed) {
            tickRollout(now);
            refreshRuleSnapshot();
            std::lock_guard lock(mutex_);
            snapshot_.incidents += new_incidents;
        }
        return;
    }
    tickRollout(now);

    if (incident_log_) {
        retryUnsavedIncidents();
    }
    // Free pages between live window slots back to the kernel (see releaseFreeMemory): at
    // 100k lines/s with a 5-minute p99 the heap kept 1-3 MB free between trims.
    if (std::chrono::steady_clock::now() - last_trim_ >= kTrimEvery) {
        releaseFreeMemory();
        last_trim_ = std::chrono::steady_clock::now();
    }

    refreshRuleSnapshot();
    const auto delivery = hooks_->counters();
    // Read before the snapshot's lock, which the listener's requests wait on: the windows'
    // memory once per source (log sources first, then scrape sources), the process's.
    std::vector<std::size_t> window_bytes(judge_->sourceCount());
    for (std::size_t i = 0; i < window_bytes.size(); ++i) {
        window_bytes[i] = judge_->memoryBytes(i);
    }
    const ProcessMemory process = readProcessMemory();
    std::lock_guard lock(mutex_);
    for (const auto& [name, counters] : delivery) {
        for (auto& h : snapshot_.hooks) {
            if (h.name == name) {
                h.delivery = counters;
            }
        }
    }
    snapshot_.hook_jobs_dropped = hooks_->dropped();
    snapshot_.hook_jobs_queued = hooks_->queued();
    snapshot_.last_tick = now;
    ++snapshot_.ticks;
    snapshot_.incidents += new_incidents;
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
        s.window_bytes = window_bytes[i];
        s.progress.clear();
        for (const auto& position : sources_[i]->positions) {
            struct stat st {};
            const std::uint64_t size =
                ::stat(position.path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : position.offset;
            s.progress.push_back({position.path, position.offset, size});
        }
        if (latency_windows_[i]) {
            const WindowView& w = judge_->series(i).window(*latency_windows_[i]);
            if (w.count() > 0) {
                s.latency = StatusSnapshot::Source::Latency{w.count(),
                                                            w.meanSeconds() * static_cast<double>(w.count()),
                                                            w.quantileSeconds(0.5),
                                                            w.quantileSeconds(0.9),
                                                            w.quantileSeconds(0.99),
                                                            w.quantileSeconds(0.999)};
            } else {
                s.latency = StatusSnapshot::Source::Latency{};
            }
        }
    }
    snapshot_.scrapes = scrapes_->status();
    auto& memory = snapshot_.memory;
    memory.rss_bytes = process.rss_bytes;
    memory.anon_bytes = process.anon_bytes;
    memory.file_bytes = process.file_bytes;
    memory.heap_in_use_bytes = process.heap_in_use_bytes;
    memory.heap_free_bytes = process.heap_free_bytes;
    memory.windows_bytes = std::accumulate(window_bytes.begin(), window_bytes.end(), std::uint64_t{0});
}

void Daemon::pollSources() {
    for (auto& source : sources_) {
        source->tailer.pollOnce();
    }
    scrapes_->scrapeOnce();
}

void Daemon::run() {
    run(Heartbeat{});
}

void Daemon::run(const Heartbeat& heartbeat) {
    using steady = std::chrono::steady_clock;
    const auto beat_every = std::chrono::duration_cast<steady::duration>(heartbeat.every);
    const bool beats_between_ticks = heartbeat.beat && beat_every > steady::duration::zero();
    auto next = steady::now();
    steady::time_point last_beat{};
    std::unique_lock lock(stop_mutex_);
    while (!stop_requested_) {
        lock.unlock();
        tick();
        // A beat a tick, not one every evaluation; more often only when `every` asks for
        // it (a watchdog shorter than two ticks).
        const auto evaluated = steady::now();
        if (heartbeat.beat &&
            (schedule_.onTick() || (beats_between_ticks && evaluated - last_beat >= beat_every))) {
            heartbeat.beat();
            last_beat = evaluated;
        }
        lock.lock();
        next += std::chrono::duration_cast<steady::duration>(schedule_.every());
        // After a stall (suspend, overload) tick again at once rather than in a burst.
        if (next < steady::now()) {
            next = steady::now();
        }
        while (!stop_cv_.wait_until(lock, beats_between_ticks ? std::min(next, steady::now() + beat_every) : next,
                                    [this] { return stop_requested_; }) &&
               steady::now() < next) {
            if (heartbeat.beat) {
                lock.unlock();
                heartbeat.beat();
                last_beat = steady::now();
                lock.lock();
            }
        }
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
    stopPreflight();
    for (auto& source : sources_) {
        source->tailer.stop();
    }
    scrapes_->stop();
    // What the sources read after the last tick goes into the final checkpoint.
    if (!checkpoint_path_.empty()) {
        const auto now = clock_.now();
        collect(now, true);
        if (checkpoint_dirty_) {
            writeCheckpointNow(now);
        }
    }
    writeRulesState();
    refusePendingRolloutCommands("the agent is stopping");
    if (rollout_) {
        persistRollout(clock_.now(), true);
    }
    if (hooks_) {
        hooks_->stop();
    }
}

void Daemon::stopWithoutSaving() {
    if (stopped_) {
        return;
    }
    stopped_ = true;
    stopPreflight();
    refusePendingRolloutCommands("the agent is stopping");
    for (auto& source : sources_) {
        source->tailer.stop();
    }
    scrapes_->stop();
    if (hooks_) {
        hooks_->stop();
    }
}

Daemon::Handoff Daemon::stopForReload() {
    Handoff handoff;
    if (stopped_) {
        return handoff;
    }
    stopped_ = true;
    stopPreflight();
    for (auto& source : sources_) {
        source->tailer.stop();
    }
    scrapes_->stop();
    const auto now = clock_.now();
    // Everything read so far goes into the windows, so the positions handed over match
    // them exactly: the next daemon reads on from there, nothing lost or counted twice.
    collect(now, true);
    handoff.checkpoint = buildCheckpoint();
    {
        std::lock_guard lock(mutex_);
        if (snapshot_.preflight_checked) {
            for (const auto& h : snapshot_.hooks) {
                handoff.preflight.push_back(HookPreflight{h.name, h.ready, h.problems});
            }
        }
    }
    handoff.rules_state = judge_->engine().saveState();
    handoff.firing_alerts = firingAlerts();
    refusePendingRolloutCommands("the agent is reloading its configuration; try again");
    if (rollout_) {
        handoff.rollout_state = rollout_->save();
        persistRollout(now, true);
    }
    if (!checkpoint_path_.empty()) {
        writeCheckpointNow(now);  // the files agree with the handoff if the process dies now
    }
    if (hooks_) {
        hooks_->stop();
    }
    return handoff;
}

void Daemon::collect(rules::TimePoint now, bool on_tick) {
    std::vector<IntervalStats> spent;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
        SourceState& source = *sources_[i];
        // An event-time source's groups are one tick of event time each: taken at ticks
        // only, so that a group is never split over two stamps.
        if (!on_tick && source.config.time == TimeMode::Event) {
            continue;
        }
        const SourcePositions before = checkpoint_path_.empty() ? SourcePositions{} : source.positions;
        std::vector<RecordedPart> parts = source.recorder.takeParts(&source.positions);
        // Without new data or positions a checkpoint would say the same thing again:
        // slots expiring with time are replayed identically after a restore.
        if (!parts.empty() || (!checkpoint_path_.empty() && source.positions != before)) {
            checkpoint_dirty_ = true;
        }
        std::uint64_t too_late = 0;
        for (auto& part : parts) {
            if (!judge_->addPart(i, part, now, config_.agent.tick)) {
                too_late += static_cast<std::uint64_t>(part.stats.events);
            }
            spent.push_back(std::move(part.stats));
        }
        // Handed back, a part's dense histogram serves the recorder's next interval
        // instead of a new allocation at every evaluation.
        source.recorder.recycle(spent);
        if (too_late > 0) {
            source.tailer.counters().too_late.fetch_add(too_late, std::memory_order_relaxed);
        }
    }
    ScrapeHarvest harvest = scrapes_->take();
    if (!harvest.parts.empty()) {
        checkpoint_dirty_ = true;
    }
    for (const auto& p : harvest.parts) {
        judge_->addPart(p.source, p.part, now, config_.agent.tick);
    }
    for (const auto& [source, failed] : harvest.fetch_errors) {
        judge_->setFetchError(source, failed);
    }
}

void Daemon::prepareStateDir() {
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
        rules_state_path_.clear();
    }
}

void Daemon::restoreCheckpoint() {
    if (!checkpoint_store_) {
        return;
    }
    std::string why;
    CheckpointLoad load;
    auto checkpoint = checkpoint_store_->read(why, &load);
    if (!checkpoint) {
        if (!why.empty()) {
            spdlog::warn("ignoring checkpoint: {}; sources start per read_from", why);
        }
        return;
    }
    if (!load.journal_note.empty()) {
        // The state used is still a complete one (positions matching the windows): what
        // was read after it is read again.
        const auto level = load.journal_torn_tail ? spdlog::level::info : spdlog::level::warn;
        if (load.journal_records == 0) {
            spdlog::log(level, "checkpoint journal {}; using the base alone", load.journal_note);
        } else {
            spdlog::log(level, "checkpoint journal {}; using the base and the {} record(s) before that",
                        load.journal_note, load.journal_records);
        }
    } else if (load.journal_records > 0) {
        spdlog::info("checkpoint: the base and {} journal record(s)", load.journal_records);
    }
    applyCheckpoint(*checkpoint);
    checkpoint.reset();
    // The restore's transient copies (the files, the decoded journal) are freed now:
    // hand the pages back rather than keep them as free heap for the daemon's life.
    releaseFreeMemory();
}

void Daemon::applyCheckpoint(const Checkpoint& checkpoint_value) {
    const Checkpoint* checkpoint = &checkpoint_value;
    // Scrape streams have no read positions: only their windows come back.
    for (std::size_t i = sources_.size(); i < judge_->sourceCount(); ++i) {
        if (const SourceCheckpoint* saved = checkpoint->find(judge_->sourceName(i))) {
            judge_->restoreStreams(i, saved->streams);
            judge_->series(i).restore(saved->series);
        }
    }
    for (std::size_t i = 0; i < sources_.size(); ++i) {
        auto& source = sources_[i];
        const SourceCheckpoint* saved = checkpoint->find(source->config.name);
        if (saved == nullptr) {
            continue;
        }
        source->tailer.restore(saved->positions);
        source->positions = saved->positions;
        judge_->restoreStreams(i, saved->streams);
        if (judge_->series(i).restore(saved->series)) {
            spdlog::info("source {}: resuming {} file(s) from the checkpoint; windows restored", source->config.name,
                         saved->positions.size());
        } else {
            spdlog::warn("source {}: resuming {} file(s) from the checkpoint; window state not restored "
                         "(its histogram settings changed)",
                         source->config.name, saved->positions.size());
        }
    }
}

Checkpoint Daemon::buildCheckpoint() {
    Checkpoint checkpoint;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
        checkpoint.sources.push_back(SourceCheckpoint{sources_[i]->config.name, sources_[i]->positions,
                                                      judge_->series(i).serialize(), judge_->saveStreams(i)});
    }
    for (std::size_t i = sources_.size(); i < judge_->sourceCount(); ++i) {
        checkpoint.sources.push_back(
            SourceCheckpoint{judge_->sourceName(i), {}, judge_->series(i).serialize(), judge_->saveStreams(i)});
    }
    return checkpoint;
}

std::optional<std::string> Daemon::writeCheckpointBase() {
    return checkpoint_store_->writeBase([this](CheckpointEncoder& encoder) {
        // One series' bytes at a time: the whole checkpoint is never in memory.
        encoder.begin(judge_->sourceCount());
        for (std::size_t i = 0; i < judge_->sourceCount(); ++i) {
            const bool log_source = i < sources_.size();
            const std::size_t streams = judge_->streamCount(i);  // adopts new streams first
            encoder.source(log_source ? sources_[i]->config.name : judge_->sourceName(i),
                           log_source ? sources_[i]->positions : SourcePositions{}, judge_->series(i).serialize(),
                           streams);
            judge_->forEachStream(i, [&](const std::string& selection, const std::string& group, Series& series) {
                encoder.stream(selection, group, series.serialize());
            });
        }
    });
}

std::optional<std::string> Daemon::appendCheckpointChanges() {
    Checkpoint changes;
    for (std::size_t i = 0; i < judge_->sourceCount(); ++i) {
        const bool log_source = i < sources_.size();
        judge_->streamCount(i);  // adopts new streams
        SourceCheckpoint source{log_source ? sources_[i]->config.name : judge_->sourceName(i),
                                log_source ? sources_[i]->positions : SourcePositions{},
                                judge_->series(i).serializeChanges(),
                                {}};
        judge_->forEachStream(i, [&](const std::string& selection, const std::string& group, Series& series) {
            if (series.hasUnsavedChanges()) {
                source.streams.push_back(StreamCheckpoint{selection, group, series.serializeChanges()});
            }
        });
        changes.sources.push_back(std::move(source));
    }
    return checkpoint_store_->append(changes);
}

void Daemon::markCheckpointSaved() {
    for (std::size_t i = 0; i < judge_->sourceCount(); ++i) {
        judge_->series(i).markSaved();
        judge_->forEachStream(i, [](const std::string&, const std::string&, Series& series) { series.markSaved(); });
    }
}

void Daemon::writeCheckpointNow(rules::TimePoint now) {
    last_checkpoint_ = std::chrono::steady_clock::now();
    // A new base when the store wants one (the first of this process, after a failure, or
    // when the journal has outgrown the base), else one journal record of what changed.
    // Either way atomic and synced, 0600 (CheckpointStore). Nothing runs between encoding
    // and marking the series saved: they cannot change meanwhile.
    const bool base = checkpoint_store_->wantsBase();
    const auto err = base ? writeCheckpointBase() : appendCheckpointChanges();
    if (!err) {
        markCheckpointSaved();
    }
    if (base) {
        // The base's series were encoded one at a time (each up to a few MB, from the heap:
        // main() sets the mmap threshold to 4 MB) and freed: return those pages now.
        releaseFreeMemory();
        last_trim_ = std::chrono::steady_clock::now();
    }
    // The rules' state changes without transitions too (a baseline learned and frozen,
    // M-of-N history, the recovery clock): saved with the windows it was computed from,
    // a crash loses at most one checkpoint interval of it.
    const bool rules_ok = writeRulesState();
    checkpoint_dirty_ = err || !rules_ok;  // a failed write is retried
    std::lock_guard lock(mutex_);
    if (err) {
        // Logged on the first failure of a run of failures, not on every tick.
        if (!snapshot_.checkpoint_failing) {
            spdlog::error("checkpoint: {} (retried every checkpoint_interval; not logged again until it works)",
                          *err);
        }
        ++snapshot_.checkpoint_failures;
        snapshot_.checkpoint_failing = true;
        snapshot_.last_checkpoint.reset();
        return;
    }
    if (snapshot_.checkpoint_failing) {
        spdlog::info("checkpoint: written again ({} failed in all)", snapshot_.checkpoint_failures);
        snapshot_.checkpoint_failing = false;
    }
    ++snapshot_.checkpoints;
    snapshot_.last_checkpoint = now;
    snapshot_.memory.checkpoint_bytes = checkpoint_store_->baseBytes() + checkpoint_store_->journalBytes();
    snapshot_.checkpoint_bytes_written = checkpoint_store_->bytesWritten();
    snapshot_.checkpoint_bases = checkpoint_store_->basesWritten();
}

void Daemon::waitForHooks() {
    hooks_->waitIdle();
}

void Daemon::runPreflight(bool log_all) {
    std::vector<HookPreflight> results;
    results.reserve(config_.hooks.size());
    for (const auto& hook : config_.hooks) {
        {
            std::lock_guard lock(preflight_mutex_);
            if (preflight_stop_) {
                return;  // stopping or reloading: a partial pass is not worth the wait
            }
        }
        results.push_back(preflightHook(hook));  // may block on DNS: no lock held
    }
    std::size_t not_ready = 0;
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < results.size() && i < snapshot_.hooks.size(); ++i) {
        const HookConfig& hook = config_.hooks[i];
        auto& h = snapshot_.hooks[i];
        auto& result = results[i];
        not_ready += result.ready ? 0 : 1;
        if (log_all || result.problems != h.problems) {
            for (const auto& problem : result.problems) {
                spdlog::error("preflight: {}{}", formatPreflightProblem(hook, problem),
                              h.gating ? "" : " (does not gate readiness)");
            }
            if (!log_all && result.ready) {
                spdlog::info("preflight: hook {}: ready again", hook.name);
            }
        }
        h.ready = result.ready;
        h.problems = std::move(result.problems);
    }
    snapshot_.preflight_checked = true;
    if (log_all) {
        if (not_ready == 0) {
            spdlog::info("preflight: {} hook(s), all ready", results.size());
        } else {
            spdlog::error("preflight: {} hook(s), {} ready, {} not ready", results.size(), results.size() - not_ready,
                          not_ready);
        }
    }
}

void Daemon::stopPreflight() {
    {
        std::lock_guard lock(preflight_mutex_);
        preflight_stop_ = true;
    }
    preflight_cv_.notify_all();
    if (preflight_thread_.joinable()) {
        preflight_thread_.join();
    }
}

std::map<std::string, std::string> Daemon::lastHookMessages() const {
    std::lock_guard lock(mutex_);
    return last_messages_;
}

StatusSnapshot Daemon::snapshot() const {
    std::lock_guard lock(mutex_);
    return snapshot_;
}

BreachEvent Daemon::makeEvent(const rules::Notification& n) const {
    const auto& rule = *n.rule;
    BreachEvent e;
    e.rule = rule.name;
    e.severity = rules::toString(rule.severity);
    e.state = n.kind == rules::NotificationKind::Resolve ? "resolved" : "firing";
    e.source = rule.source;
    e.metric = rule.metric.text;
    e.value = n.metric.value.value_or(std::nan(""));
    e.threshold = n.threshold.value_or(rule.threshold);
    e.comparison = rules::toString(rule.comparison);
    e.samples = n.metric.samples;
    e.window = rule.window;
    e.for_ = rule.for_;
    e.since = n.since;
    e.fired_at = n.at;
    e.host = host_;
    e.description = rule.description;
    e.group = n.group;
    // "route=/a,variant=canary" -> labels route="/a", variant="canary" (group_by order).
    if (!n.group.empty() && n.group != rules::kOtherGroup) {
        std::string_view rest = n.group;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            const std::string_view pair = rest.substr(0, comma);
            if (const auto eq = pair.find('='); eq != std::string_view::npos) {
                e.labels.emplace_back(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
            }
            rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        }
    }
    if (n.kind == rules::NotificationKind::Resolve) {
        e.resolved_at = n.at;
    }
    e.baseline = n.baseline;
    e.mann_whitney = n.mann_whitney;
    const ValueShape shape = valueShapeOf(rule);
    const std::string group = n.group.empty() ? std::string() : " {" + n.group + "}";
    if (shape.kind == ValueKind::Absolute) {
        e.summary = fmt::format("{}{} {} {} {} over {} ({} samples)", rule.metric.text, group,
                                n.metric.value ? formatMetricValue(rule.metric, *n.metric.value) : std::string("n/a"),
                                rule.comparison == rules::Comparison::Above ? ">" : "<",
                                formatMetricValue(rule.metric, e.threshold), rules::formatDuration(rule.window),
                                n.metric.samples);
    } else {
        e.value_text = describeRuleValue(shape, ValueReading{n.metric.value, n.threshold, n.baseline, n.mann_whitney});
        e.summary = fmt::format("{}{} over {} ({} samples)", e.value_text, group, rules::formatDuration(rule.window),
                                n.metric.samples);
    }
    return e;
}

std::vector<Daemon::Handoff::FiringAlert> Daemon::firingAlerts() const {
    std::vector<Handoff::FiringAlert> out;
    if (config_.agent.dry_run) {
        return out;  // nothing was sent: nothing to resolve or to re-send
    }
    const auto& engine = judge_->engine();
    const auto& specs = engine.rules();
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const auto& rule = specs[i];
        if (rule.dry_run) {
            continue;
        }
        for (const auto& status : engine.groupStatuses(i)) {
            if (status.state != rules::AlertState::Firing || !status.notified || !status.since) {
                continue;
            }
            rules::Notification n;
            n.rule_index = i;
            n.rule = &rule;
            n.group = status.group;
            n.kind = rules::NotificationKind::Fire;
            n.metric = status.last;
            n.threshold = status.threshold;
            n.baseline = status.baseline;
            n.mann_whitney = status.mann_whitney;
            n.at = status.firing_since.value_or(*status.since);
            n.since = *status.since;  // the fire's incident id, derived from it, is kept
            Handoff::FiringAlert alert;
            alert.event = makeEvent(n);
            for (const auto& h : rule.severity == rules::Severity::Critical ? rule.resolve_hooks : rule.hooks) {
                const HookConfig* hook = config_.findHook(h);
                if (hook != nullptr && notifies(hook->type)) {
                    alert.hooks.push_back(h);
                }
            }
            if (!alert.hooks.empty()) {
                out.push_back(std::move(alert));
            }
        }
    }
    return out;
}

void Daemon::carryFiringAlerts(const std::vector<Handoff::FiringAlert>& alerts) {
    const auto& engine = judge_->engine();
    const auto& specs = engine.rules();
    const auto now = clock_.now();
    for (const auto& alert : alerts) {
        const rules::RuleSpec* rule = nullptr;
        bool goes_on = false;
        for (std::size_t i = 0; i < specs.size() && rule == nullptr; ++i) {
            if (specs[i].name != alert.event.rule) {
                continue;
            }
            rule = &specs[i];
            for (const auto& status : engine.groupStatuses(i)) {
                goes_on = goes_on || (status.group == alert.event.group && status.state == rules::AlertState::Firing &&
                                      status.since == alert.event.since);
            }
        }
        BreachEvent event = alert.event;
        std::vector<std::string> hooks;
        if (goes_on) {
            // Still firing: the new alertmanager hooks' re-send threads must learn of it,
            // or Alertmanager would let it lapse at its endsAt while the rule still fires.
            for (const auto& h : rule->dry_run ? std::vector<std::string>{} : rule->hooks) {
                const HookConfig* hook = config_.findHook(h);
                if (hook != nullptr && hook->type == HookType::Alertmanager) {
                    hooks.push_back(h);
                }
            }
        } else {
            // The episode ended with the old config (rule removed, or its state reset by a
            // changed definition): it will never resolve by itself, so resolve it now.
            event.state = "resolved";
            event.resolved_at = now;
            for (const auto& h : alert.hooks) {
                const HookConfig* hook = config_.findHook(h);
                if (hook != nullptr && notifies(hook->type)) {
                    hooks.push_back(h);
                }
            }
        }
        if (hooks.empty()) {
            continue;
        }
        const std::string name = event.group.empty() ? event.rule : event.rule + " {" + event.group + "}";
        const char* what = goes_on ? "still firing after the reload: re-sending its alert through"
                                   : "its firing episode ended with the reload: resolving it through";
        if (config_.agent.dry_run) {
            spdlog::warn("rule {}: dry run: {} [{}] would run", name, what, fmt::join(hooks, ", "));
            continue;
        }
        spdlog::info("rule {}: {} [{}]", name, what, fmt::join(hooks, ", "));
        hooks_->enqueue(std::move(hooks), std::move(event));
    }
}

void Daemon::refreshRuleSnapshot() {
    std::vector<StatusSnapshot::Rule> rows;
    const auto& specs = judge_->engine().rules();
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const auto& rule = specs[i];
        auto groups = judge_->engine().groupStatuses(i);
        if (groups.empty()) {
            groups.push_back(judge_->engine().status(i));
        }
        for (const auto& status : groups) {
            StatusSnapshot::Rule r;
            r.name = rule.name;
            r.group = status.group;
            r.severity = rules::toString(rule.severity);
            r.source = rule.source;
            r.metric = rule.metric.text;
            r.comparison = rules::toString(rule.comparison);
            r.threshold = status.threshold.value_or(rule.isRelative() ? std::nan("") : rule.threshold);
            r.window = rule.window;
            r.for_ = rule.for_;
            r.state = status.state;
            r.value = status.last.value;
            r.samples = status.last.samples;
            r.baseline = status.baseline;
            r.mann_whitney = status.mann_whitney;
            r.since = status.since;
            r.last_evaluation = status.last_evaluation;
            r.latched = status.latched;
            r.inhibited = status.inhibited;
            r.dry_run = rule.dry_run;
            rows.push_back(std::move(r));
        }
    }
    std::lock_guard lock(mutex_);
    snapshot_.rules = std::move(rows);
}

void Daemon::restoreRulesState() {
    std::string data;
    std::string why;
    if (!readStateFile(rules_state_path_, data, why)) {
        if (!why.empty()) {
            spdlog::warn("rules state {}: {}; rules start fresh", rules_state_path_, why);
        }
        return;
    }
    applyRulesState(data, rules_state_path_);
}

void Daemon::applyRulesState(std::string_view data, const std::string& from) {
    if (judge_->engine().restoreState(data, clock_.now())) {
        spdlog::info("rules state restored from {} (pending timers, latches, baselines; rules whose "
                     "definition changed start fresh)",
                     from);
    } else {
        spdlog::warn("rules state {} is corrupt or from another version; rules start fresh", from);
    }
}

bool Daemon::writeRulesState() {
    if (rules_state_path_.empty()) {
        return true;
    }
    const auto err = writeFileAtomically(rules_state_path_, judge_->engine().saveState(), 0600);
    std::lock_guard lock(mutex_);
    if (err) {
        if (!snapshot_.rules_state_failing) {
            spdlog::error("rules state: {} (latches and timers are not persisted; retried, not logged again "
                          "until it works)",
                          *err);
        }
        ++snapshot_.rules_state_failures;
        snapshot_.rules_state_failing = true;
    } else if (snapshot_.rules_state_failing) {
        spdlog::info("rules state: written again ({} failed in all)", snapshot_.rules_state_failures);
        snapshot_.rules_state_failing = false;
    }
    return !err;
}

void Daemon::onHookResult(const std::string& hook, const BreachEvent& event, const HookResult& result) {
    if (result.skipped) {
        spdlog::info("hook {} (rule {}): {}", hook, event.rule, result.message);
    } else if (result.deferred) {
        spdlog::warn("hook {} (rule {}): not delivered in {}ms, the next steps go on: {}", hook, event.rule,
                     result.duration.count(), result.message);
    } else if (result.ok) {
        spdlog::info("hook {} (rule {}): ok in {}ms: {}", hook, event.rule, result.duration.count(), result.message);
    } else {
        spdlog::error("hook {} (rule {}): FAILED after {}ms ({} attempt(s)): {}", hook, event.rule,
                      result.duration.count(), result.attempts, result.message);
    }
    std::optional<std::size_t> open_now;
    if (!event.incident_id.empty()) {
        std::lock_guard incidents_lock(incidents_mutex_);
        if (auto it = open_incidents_.find(event.incident_id); it != open_incidents_.end()) {
            IncidentRecord& record = it->second;
            if (IncidentHookStep* step = record.step(hook)) {
                step->status = result.skipped    ? HookStepStatus::Skipped
                               : result.deferred ? HookStepStatus::Spooled
                               : result.ok       ? HookStepStatus::Ok
                                                 : HookStepStatus::Failed;
                step->message = result.message;
                step->duration = result.duration;
                step->attempts = result.attempts;
                step->finished = clock_.now();
            }
            record.complete = record.remainingHooks().empty();
            saveIncident(record);
            if (record.complete) {
                std::size_t failed = 0;
                for (const auto& h : record.hooks) {
                    failed += h.status == HookStepStatus::Failed ? 1 : 0;
                }
                if (failed == 0) {
                    spdlog::info("incident {}: rollback finished, {} hook(s) done", record.id, record.hooks.size());
                } else {
                    spdlog::error("incident {}: rollback finished with {} of {} hook(s) FAILED", record.id, failed,
                                  record.hooks.size());
                }
                open_incidents_.erase(it);
            }
        }
        open_now = open_incidents_.size();
    }
    std::lock_guard lock(mutex_);
    if (open_now) {
        snapshot_.incidents_open = *open_now;
    }
    if (result.skipped) {
        return;  // not a run: logged above, not counted
    }
    last_messages_[hook] = result.message;
    for (auto& h : snapshot_.hooks) {
        if (h.name != hook) {
            continue;
        }
        if (result.deferred) {
            ++h.deferred;  // counted as ok or failed when its final result comes
        } else {
            (result.ok ? h.ok : h.failed) += 1;
            h.last_duration_seconds = static_cast<double>(result.duration.count()) / 1000.0;
        }
        h.last_message = statusSummary(result);
        h.last_run = clock_.now();
    }
}

void Daemon::noteIncident(const IncidentRecord& record) {
    StatusSnapshot::Incident summary;
    summary.id = record.id;
    summary.kind = record.kind;
    summary.rule = record.event.rule;
    summary.reason = record.reason;
    summary.opened = record.opened;
    summary.complete = record.complete;
    for (const auto& step : record.hooks) {
        switch (step.status) {
            case HookStepStatus::Ok:
            case HookStepStatus::Skipped:
                ++summary.hooks_ok;
                break;
            case HookStepStatus::Failed:
                ++summary.hooks_failed;
                break;
            case HookStepStatus::Pending:
            case HookStepStatus::Running:
            case HookStepStatus::Spooled:
                ++summary.hooks_pending;
                break;
        }
    }
    auto& recent = snapshot_.recent_incidents;
    const auto it = std::find_if(recent.begin(), recent.end(), [&](const auto& i) { return i.id == record.id; });
    if (it != recent.end()) {
        *it = std::move(summary);
        return;
    }
    recent.push_back(std::move(summary));
    constexpr std::size_t kRecentIncidents = 10;
    if (recent.size() > kRecentIncidents) {
        recent.erase(recent.begin());
    }
}

void Daemon::saveIncident(const IncidentRecord& record) {
    {
        std::lock_guard lock(mutex_);
        noteIncident(record);
    }
    if (!incident_log_) {
        return;
    }
    const auto err = incident_log_->save(record);
    if (err) {
        unsaved_incidents_[record.id] = record;
    } else {
        unsaved_incidents_.erase(record.id);
    }
    std::lock_guard lock(mutex_);
    snapshot_.incident_records_unsaved = unsaved_incidents_.size();
    if (err) {
        if (!snapshot_.incident_records_failing) {
            spdlog::error("incident {}: cannot write its record: {} (the rollback goes on; the record is kept in "
                          "memory and written when the disk takes it; not logged again until then)",
                          record.id, *err);
        }
        snapshot_.incident_records_failing = true;
        ++snapshot_.incident_record_failures;
    } else if (snapshot_.incident_records_failing && unsaved_incidents_.empty()) {
        spdlog::info("incident records: written again ({} failed writes in all)", snapshot_.incident_record_failures);
        snapshot_.incident_records_failing = false;
    }
}

void Daemon::retryUnsavedIncidents() {
    std::lock_guard lock(incidents_mutex_);
    if (unsaved_incidents_.empty() ||
        std::chrono::steady_clock::now() - last_incident_retry_ < config_.agent.checkpoint_interval) {
        return;
    }
    last_incident_retry_ = std::chrono::steady_clock::now();
    // A record still open is the newer one (open_incidents_ is updated first).
    std::vector<IncidentRecord> pending;
    for (const auto& [id, record] : unsaved_incidents_) {
        const auto open = open_incidents_.find(id);
        pending.push_back(open != open_incidents_.end() ? open->second : record);
    }
    for (const auto& record : pending) {
        saveIncident(record);
        if (unsaved_incidents_.count(record.id) == 0) {
            spdlog::info("incident {}: record written", record.id);
        } else {
            break;  // still failing: the rest wait for the next try
        }
    }
}

BreachEvent Daemon::openIncident(const rules::Notification& n, BreachEvent event) {
    IncidentRecord record;
    record.id = incidentId(event);
    record.kind = "rule";
    record.reason = event.summary;
    record.opened = clock_.now();
    event.incident_id = record.id;

    // The window the rule judged, as it stood when it fired.
    for (auto& input : judge_->inputsFor(n.rule_index)) {
        if (input.group != n.group) {
            continue;
        }
        const rules::SeriesStats& st = input.stats;
        IncidentStats& out = record.stats;
        out.events = st.events;
        out.errors = st.errors;
        if (st.events > 0) {
            out.error_ratio = static_cast<double>(st.errors) / static_cast<double>(st.events);
        }
        if (st.window.count() > 0) {
            out.rate_per_second = static_cast<double>(st.events) / std::chrono::duration<double>(st.window).count();
        }
        if (st.latency != nullptr && st.latency->count() > 0) {
            out.p50 = st.latency->quantileSeconds(0.5);
            out.p90 = st.latency->quantileSeconds(0.9);
            out.p99 = st.latency->quantileSeconds(0.99);
            out.p999 = st.latency->quantileSeconds(0.999);
            out.mean = st.latency->meanSeconds();
            out.max = st.latency->maxSeconds();
        }
        break;
    }
    // The last raw lines the judgement read, from the rule's source.
    const std::size_t want = config_.agent.incident_log_lines;
    for (const auto& source : sources_) {
        if (source->config.name != n.rule->source || want == 0) {
            continue;
        }
        const bool several = source->positions.size() > 1;
        for (const auto& file : source->positions) {
            for (auto& line : tailLines(file.path, file.offset, want)) {
                record.log_lines.push_back(several ? file.path + ": " + line : std::move(line));
            }
        }
        if (record.log_lines.size() > want) {
            record.log_lines.erase(record.log_lines.begin(),
                                   record.log_lines.end() - static_cast<std::ptrdiff_t>(want));
        }
    }
    record.addHooks(n.hooks);
    record.event = event;
    std::lock_guard lock(incidents_mutex_);
    saveIncident(record);  // on disk before the first hook runs
    spdlog::warn("incident {} opened by rule {}: rollback hooks [{}]", record.id, event.rule,
                 fmt::join(n.hooks, ", "));
    open_incidents_[record.id] = std::move(record);
    std::lock_guard snapshot_lock(mutex_);
    snapshot_.incidents_open = open_incidents_.size();
    return event;
}

void Daemon::resumeIncidents() {
    std::vector<std::string> problems;
    auto records = incident_log_->list(&problems);
    for (const auto& p : problems) {
        spdlog::warn("incident record {}: skipped", p);
    }
    std::lock_guard lock(incidents_mutex_);
    for (auto& record : records) {
        if (record.complete) {
            continue;
        }
        auto remaining = record.remainingHooks();
        for (const auto& h : record.hooks) {
            if (h.status == HookStepStatus::Running) {
                spdlog::warn("incident {}: hook {} was interrupted by a restart; running it again", record.id, h.hook);
            }
        }
        if (remaining.empty()) {
            record.complete = true;
            saveIncident(record);
            continue;
        }
        spdlog::warn("incident {} (rule {}): resuming the rollback: {} hook(s) left [{}], {} already done",
                     record.id, record.event.rule, remaining.size(), fmt::join(remaining, ", "),
                     record.hooks.size() - remaining.size());
        BreachEvent event = record.event;
        event.incident_id = record.id;
        event.steps = record.finishedSteps();
        const std::string id = record.id;
        open_incidents_[id] = std::move(record);
        hooks_->enqueue(std::move(remaining), std::move(event));
    }
    std::lock_guard snapshot_lock(mutex_);
    snapshot_.incidents_open = open_incidents_.size();
}

void Daemon::onHookStart(const std::string& hook, const BreachEvent& event) {
    if (event.incident_id.empty()) {
        return;
    }
    std::lock_guard lock(incidents_mutex_);
    auto it = open_incidents_.find(event.incident_id);
    if (it == open_incidents_.end()) {
        return;
    }
    if (IncidentHookStep* step = it->second.step(hook)) {
        step->status = HookStepStatus::Running;
        step->started = clock_.now();
        ++step->runs;
        saveIncident(it->second);  // a crash from here on shows this hook as interrupted
    }
}

std::optional<std::string> Daemon::rollback(const std::string& reason, const std::string& rule, std::string& error) {
    std::vector<std::string> hooks;
    const rules::RuleSpec* named = nullptr;
    for (const auto& spec : config_.rules) {
        if (!rule.empty() ? spec.name != rule : spec.severity != rules::Severity::Critical) {
            continue;
        }
        named = &spec;
        for (const auto& h : spec.hooks) {
            if (std::find(hooks.begin(), hooks.end(), h) == hooks.end()) {
                hooks.push_back(h);
            }
        }
    }
    if (!rule.empty() && named == nullptr) {
        error = "no rule named '" + rule + "'";
        return std::nullopt;
    }
    if (hooks.empty()) {
        error = rule.empty() ? "no critical rule has rollback hooks" : "rule '" + rule + "' has no hooks";
        return std::nullopt;
    }
    if (config_.agent.dry_run) {
        error = "the agent runs in dry-run mode: no hook acts (would run " + fmt::format("{}", fmt::join(hooks, ", ")) +
                ")";
        return std::nullopt;
    }
    const auto now = clock_.now();
    IncidentRecord record;
    record.id = fmt::format("manual-{}", std::chrono::duration_cast<std::chrono::milliseconds>(
                                             now.time_since_epoch()).count());
    record.kind = "manual";
    record.reason = reason.empty() ? std::string("manual rollback") : reason;
    record.opened = now;
    BreachEvent& e = record.event;
    e.rule = rule.empty() ? std::string("manual") : rule;
    e.severity = "critical";
    e.state = "firing";
    e.source = named && !rule.empty() ? named->source : std::string();
    e.metric = "manual";
    e.value = std::nan("");
    e.threshold = std::nan("");
    e.since = now;
    e.fired_at = now;
    e.host = host_;
    e.reason = record.reason;
    e.summary = "manual rollback: " + record.reason;
    e.incident_id = record.id;
    record.addHooks(hooks);
    BreachEvent event = e;
    {
        std::lock_guard lock(incidents_mutex_);
        if (open_incidents_.count(record.id) != 0) {
            error = "a manual rollback was started this very millisecond; try again";
            return std::nullopt;
        }
        saveIncident(record);
        open_incidents_[record.id] = std::move(record);
    }
    spdlog::warn("incident {}: manual rollback ({}): running hooks [{}]", event.incident_id, event.reason,
                 fmt::join(hooks, ", "));
    {
        std::lock_guard lock(mutex_);
        ++snapshot_.manual_rollbacks;
        ++snapshot_.incidents_open;
    }
    const std::string id = event.incident_id;
    hooks_->enqueue(std::move(hooks), std::move(event));
    return id;
}

std::shared_future<void> Daemon::requestRearm() {
    std::lock_guard lock(rearm_mutex_);
    if (!rearm_promise_) {
        rearm_promise_.emplace();
        rearm_future_ = rearm_promise_->get_future().share();
    }
    return rearm_future_;
}

void Daemon::applyPendingRearm() {
    std::optional<std::promise<void>> promise;
    {
        std::lock_guard lock(rearm_mutex_);
        promise.swap(rearm_promise_);
    }
    if (!promise) {
        return;
    }
    rearmRules();
    spdlog::warn("rearmed: rollback latches cleared; the next critical breach rolls back again");
    promise->set_value();
}

void Daemon::rearmRules() {
    judge_->engine().rearm();
    writeRulesState();
    refreshRuleSnapshot();
    std::lock_guard lock(mutex_);
    ++snapshot_.rearms;
}


// ---- the progressive rollout ([rollout]) --------------------------------------------

namespace {

int severityRank(rules::AlertState state) {
    switch (state) {
        case rules::AlertState::Firing:
            return 2;
        case rules::AlertState::Pending:
            return 1;
        default:
            return 0;
    }
}

bool sameEntry(const RolloutHistoryEntry& a, const RolloutHistoryEntry& b) {
    return a.at == b.at && a.action == b.action && a.from_percent == b.from_percent &&
           a.to_percent == b.to_percent && a.reason == b.reason;
}

/// Whether two states differ in nothing but the held time.
bool sameExceptHeld(const RolloutState& a, const RolloutState& b) {
    return a.stage == b.stage && a.percent == b.percent && a.phase == b.phase && a.paused == b.paused &&
           a.entered_at == b.entered_at && a.cooldown_until == b.cooldown_until && a.rollbacks == b.rollbacks &&
           a.promotions == b.promotions && a.rollbacks_total == b.rollbacks_total &&
           a.rearm_pending == b.rearm_pending &&
           std::equal(a.history.begin(), a.history.end(), b.history.begin(), b.history.end(), sameEntry);
}

}  // namespace

const char* toString(RolloutCommand command) {
    switch (command) {
        case RolloutCommand::Pause:
            return "pause";
        case RolloutCommand::Resume:
            return "resume";
        case RolloutCommand::Promote:
            return "promote";
        case RolloutCommand::Abort:
            return "abort";
    }
    return "?";
}

std::optional<RolloutCommand> parseRolloutCommand(std::string_view text) {
    for (const auto c : {RolloutCommand::Pause, RolloutCommand::Resume, RolloutCommand::Promote, RolloutCommand::Abort}) {
        if (text == toString(c)) {
            return c;
        }
    }
    return std::nullopt;
}

StatusSnapshot::Rollout rolloutStatus(const RolloutController& controller, const Config& config) {
    StatusSnapshot::Rollout r;
    const RolloutState& st = controller.state();
    const RolloutConfig& rc = controller.config();
    r.stages = rc.stages;
    r.stage = st.stage;
    r.percent = st.percent;
    r.phase = st.phase;
    r.paused = st.paused;
    r.entered_at = st.entered_at;
    r.held = st.held;
    r.hold = controller.currentHold();
    r.cooldown_until = st.cooldown_until;
    r.rollbacks = st.rollbacks;
    r.max_rollbacks = rc.max_rollbacks;
    r.promotions = st.promotions;
    r.rollbacks_total = st.rollbacks_total;
    if (rc.gate.empty()) {
        for (const auto& rule : config.rules) {
            r.gate.push_back(rule.name);
        }
    } else {
        r.gate = rc.gate;
    }
    r.history.assign(st.history.begin(), st.history.end());
    return r;
}

std::vector<GateRule> Daemon::gateRules() const {
    std::vector<GateRule> gate;
    const auto& names = config_.rollout->gate;
    const auto& engine = judge_->engine();
    const auto& specs = engine.rules();
    for (std::size_t i = 0; i < specs.size(); ++i) {
        if (!names.empty() && std::find(names.begin(), names.end(), specs[i].name) == names.end()) {
            continue;
        }
        GateRule rule{specs[i].name, specs[i].severity, rules::AlertState::Inactive};
        auto groups = engine.groupStatuses(i);
        if (groups.empty()) {
            groups.push_back(engine.status(i));
        }
        // The worst group speaks for the rule: firing > pending > anything else.
        for (const auto& status : groups) {
            if (severityRank(status.state) > severityRank(rule.state)) {
                rule.state = status.state;
            }
        }
        gate.push_back(std::move(rule));
    }
    return gate;
}

void Daemon::tickRollout(rules::TimePoint now) {
    if (!rollout_) {
        return;
    }
    for (const auto& action : rollout_->tick(now, gateRules())) {
        carryOut(action, now);
    }
    std::vector<PendingRolloutCommand> commands;
    {
        std::lock_guard lock(rollout_mutex_);
        commands.swap(rollout_commands_);
    }
    std::vector<std::pair<std::promise<RolloutController::CommandResult>, RolloutController::CommandResult>> answers;
    for (auto& c : commands) {
        RolloutController::CommandResult result;
        switch (c.command) {
            case RolloutCommand::Pause:
                result = rollout_->pause(now, c.reason);
                break;
            case RolloutCommand::Resume:
                result = rollout_->resume(now, c.reason);
                break;
            case RolloutCommand::Promote:
                result = rollout_->promote(now, c.reason);
                break;
            case RolloutCommand::Abort:
                result = rollout_->abort(now, c.reason);
                break;
        }
        const std::string why = c.reason.empty() ? std::string() : " (reason: " + c.reason + ")";
        if (result.ok) {
            spdlog::info("rollout: command {}{}: {}", toString(c.command), why, result.message);
        } else {
            spdlog::warn("rollout: command {}{} refused: {}", toString(c.command), why, result.message);
        }
        if (result.action) {
            carryOut(*result.action, now);
        }
        answers.emplace_back(std::move(c.done), std::move(result));
    }
    persistRollout(now, !answers.empty());
    refreshRolloutSnapshot();
    // Answered once the state is on disk and in the snapshot the caller reads next.
    for (auto& [promise, result] : answers) {
        promise.set_value(std::move(result));
    }
}

void Daemon::carryOut(const RolloutAction& action, rules::TimePoint now) {
    const std::string what =
        fmt::format("{} {}% -> {}%: {}", action.action, action.from_percent, action.to_percent, action.reason);
    if (action.rollback) {
        spdlog::warn("rollout: {}", what);
    } else {
        spdlog::info("rollout: {}", what);
    }
    if (action.rearm) {
        rearmRules();
        spdlog::info("rollout: a new attempt: the rules' rollback latches are cleared");
    }
    const RolloutConfig& rc = *config_.rollout;
    std::vector<std::string> hooks = rc.hooks;
    if (action.rollback) {
        hooks.insert(hooks.end(), rc.rollback_hooks.begin(), rc.rollback_hooks.end());
    }
    if (hooks.empty()) {
        return;
    }
    BreachEvent e;
    e.rule = "rollout";
    e.severity = action.rollback ? "critical" : "warning";
    e.state = action.action;
    e.metric = "rollout_percent";
    e.value = action.to_percent;
    e.threshold = std::nan("");
    e.since = now;
    e.fired_at = now;
    e.host = host_;
    e.reason = action.reason;
    e.summary = "rollout " + what;
    e.rollout_percent = action.to_percent;
    e.rollout_previous_percent = action.from_percent;
    e.incident_id = sha256Hex(fmt::format("rollout\n{}\n{}\n{}\n{}", action.action, action.from_percent,
                                          action.to_percent, now.time_since_epoch().count()))
                        .substr(0, 16);
    if (config_.agent.dry_run) {
        spdlog::warn("rollout: dry run: would run hooks [{}] ({})", fmt::join(hooks, ", "), action.action);
        return;
    }
    spdlog::info("rollout: running hooks [{}] ({})", fmt::join(hooks, ", "), action.action);
    hooks_->enqueue(std::move(hooks), std::move(e));
}

void Daemon::restoreRollout(const std::optional<Handoff>& handoff) {
    std::string data;
    std::string from;
    if (handoff && handoff->rollout_state) {
        data = *handoff->rollout_state;
        from = "the previous configuration";
    } else if (!rollout_path_.empty()) {
        std::string why;
        if (!readStateFile(rollout_path_, data, why)) {
            if (!why.empty()) {
                spdlog::warn("rollout state {}: {}; the rollout starts fresh", rollout_path_, why);
            }
            return;
        }
        from = rollout_path_;
    } else {
        return;
    }
    std::string error;
    if (!rollout_->restore(data, error)) {
        spdlog::warn("rollout state from {} refused: {}; the rollout starts fresh", from, error);
        return;
    }
    const RolloutState& st = rollout_->state();
    spdlog::info("rollout state restored from {}: {}% ({}{}), held {} of {}", from, st.percent, toString(st.phase),
                 st.paused ? ", paused" : "", rules::formatDuration(st.held),
                 rules::formatDuration(rollout_->currentHold()));
    if (!rollout_path_.empty()) {
        rollout_saved_ = st;
        rollout_saved_at_ = clock_.now();
    }
}

void Daemon::persistRollout(rules::TimePoint now, bool force) {
    if (!rollout_ || rollout_path_.empty()) {
        return;
    }
    const RolloutState& st = rollout_->state();
    bool write = true;
    if (rollout_saved_ && sameExceptHeld(*rollout_saved_, st)) {
        if (st.held == rollout_saved_->held) {
            write = false;
        } else if (st.held > rollout_saved_->held && !force) {
            // Held time only grows: at most every checkpoint_interval. A reset (a gate rule
            // went pending) is written at once, so a restart never credits quiet time that
            // was not quiet.
            write = !rollout_saved_at_ || now - *rollout_saved_at_ >= config_.agent.checkpoint_interval;
        }
    }
    if (!write) {
        return;
    }
    if (const auto err = writeFileAtomically(rollout_path_, rollout_->save(), 0600)) {
        std::lock_guard lock(mutex_);
        if (snapshot_.rollout) {
            // Logged once per run of failures, not on every tick.
            if (!snapshot_.rollout->state_failing) {
                spdlog::error("rollout state: {} (the rollout's stage is not persisted; retried, not logged again "
                              "until it works)",
                              *err);
            }
            ++snapshot_.rollout->state_failures;
            snapshot_.rollout->state_failing = true;
        }
        return;  // retried at the next tick
    }
    {
        std::lock_guard lock(mutex_);
        if (snapshot_.rollout && snapshot_.rollout->state_failing) {
            spdlog::info("rollout state: written again ({} failed in all)", snapshot_.rollout->state_failures);
            snapshot_.rollout->state_failing = false;
        }
    }
    rollout_saved_ = st;
    rollout_saved_at_ = now;
}

void Daemon::refreshRolloutSnapshot() {
    if (!rollout_) {
        return;
    }
    auto status = rolloutStatus(*rollout_, config_);
    std::lock_guard lock(mutex_);
    status.state_failures = snapshot_.rollout ? snapshot_.rollout->state_failures : 0;
    status.state_failing = snapshot_.rollout && snapshot_.rollout->state_failing;
    snapshot_.rollout = std::move(status);
}

std::shared_future<RolloutController::CommandResult> Daemon::requestRollout(RolloutCommand command,
                                                                            std::string reason) {
    std::promise<RolloutController::CommandResult> promise;
    auto future = promise.get_future().share();
    RolloutController::CommandResult refused;
    if (!rollout_) {
        refused.message = "the configuration has no [rollout] section";
        promise.set_value(std::move(refused));
        return future;
    }
    std::lock_guard lock(rollout_mutex_);
    if (rollout_closed_) {
        refused.message = "the agent is stopping";
        promise.set_value(std::move(refused));
        return future;
    }
    rollout_commands_.push_back(PendingRolloutCommand{command, std::move(reason), std::move(promise)});
    return future;
}

void Daemon::refusePendingRolloutCommands(const std::string& why) {
    std::vector<PendingRolloutCommand> commands;
    {
        std::lock_guard lock(rollout_mutex_);
        rollout_closed_ = true;
        commands.swap(rollout_commands_);
    }
    for (auto& c : commands) {
        RolloutController::CommandResult refused;
        refused.message = why;
        c.done.set_value(std::move(refused));
    }
}

}  // namespace rollguard::agent
