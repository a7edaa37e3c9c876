#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "rollguard/agent/checkpoint.h"
#include "rollguard/agent/config.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/incidents.h"
#include "rollguard/agent/judge.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/rollout.h"
#include "rollguard/agent/scrape_loop.h"
#include "rollguard/agent/sliding_window.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/engine.h"

namespace rollguard::agent {

/// A copy of everything the exporters show, taken under the daemon's lock.
struct StatusSnapshot {
    struct Source {
        std::string name;
        std::vector<std::string> files;
        std::uint64_t lines = 0;
        std::uint64_t bytes = 0;
        std::uint64_t bad_invalid_json = 0;
        std::uint64_t bad_not_object = 0;
        std::uint64_t bad_latency = 0;
        std::uint64_t bad_too_long = 0;
        std::uint64_t bad_invalid_utf8 = 0;
        std::uint64_t bad_timestamp = 0;
        std::uint64_t label_sets = 0;      ///< label sets interned (overflow set included)
        std::uint64_t label_overflow = 0;  ///< lines mapped to the overflow label set
        std::uint64_t too_late = 0;        ///< events dropped: older than `lateness`
        std::uint64_t rotations = 0;
        std::uint64_t truncations = 0;
        std::uint64_t read_errors = 0;
        std::uint64_t identity_changes = 0;  ///< files read from the start because their identity changed
        std::uint64_t window_bytes = 0;  ///< memory of the source's windows, every label-set stream's too
        /// Each followed file: where the source has read to (the checkpointed offset) and
        /// the file's size now; size - offset is how far behind the source is.
        struct File {
            std::string path;
            std::uint64_t offset = 0;
            std::uint64_t size = 0;
        };
        std::vector<File> progress;
        /// Latency over the last minute (sources with a latency field), in seconds.
        struct Latency {
            std::int64_t count = 0;
            double sum = 0;  ///< seconds, from the window's mean
            double p50 = 0, p90 = 0, p99 = 0, p999 = 0;
        };
        std::optional<Latency> latency;
    };
    /// Incidents of this run and the last ones on disk, newest last (at most 10).
    struct Incident {
        std::string id;
        std::string kind;  ///< "rule" | "manual"
        std::string rule;
        std::string reason;
        rules::TimePoint opened{};
        bool complete = false;
        std::size_t hooks_ok = 0;
        std::size_t hooks_failed = 0;
        std::size_t hooks_pending = 0;  ///< not finished yet (pending or running)
    };
    /// One row per rule, or per group of a grouped rule.
    struct Rule {
        std::string name;
        std::string group;  ///< "" for an ungrouped rule
        std::string severity;
        std::string source;
        std::string metric;
        std::string comparison;
        double threshold = 0.0;
        std::chrono::nanoseconds window{0};
        std::chrono::nanoseconds for_{0};
        rules::AlertState state = rules::AlertState::Inactive;
        std::optional<double> value;
        std::int64_t samples = 0;
        std::optional<double> baseline;  ///< a relative threshold's baseline, when known
        std::optional<rules::MannWhitneyResult> mann_whitney;  ///< a compare rule's last test
        std::optional<rules::TimePoint> since;
        std::optional<rules::TimePoint> last_evaluation;
        bool latched = false;
        bool inhibited = false;  ///< a warning silenced by a firing critical rule
        bool dry_run = false;    ///< the rule runs no hooks
    };
    struct Hook {
        std::string name;
        std::string type;
        std::uint64_t ok = 0;
        std::uint64_t failed = 0;
        /// Runs whose first attempt did not deliver: the steps after them went on while
        /// the delivery continued in the background (step status "spooled").
        std::uint64_t deferred = 0;
        double last_duration_seconds = 0.0;
        std::string last_message;
        std::optional<rules::TimePoint> last_run;
        HookCounters delivery;  ///< webhook spool figures (zero for other hooks)
        /// The last preflight (preflightHook): true with no problems; true before the
        /// first one has run.
        bool ready = true;
        std::vector<std::string> problems;  ///< of the last preflight, each a sentence
        /// Its preflight decides readiness (/readyz, the gate): a hook of a critical rule
        /// or of [rollout] with readiness_preflight = "critical", every hook with "all",
        /// none with "off".
        bool gating = false;
    };
    std::string config_path;
    std::chrono::nanoseconds tick{0};
    rules::TimePoint started{};
    std::optional<rules::TimePoint> last_tick;
    std::uint64_t ticks = 0;
    std::uint64_t incidents = 0;  ///< critical rules that went firing
    std::uint64_t incidents_open = 0;  ///< incident records whose hooks have not all finished
    std::uint64_t manual_rollbacks = 0;
    std::uint64_t hook_jobs_dropped = 0;  ///< hook jobs dropped: their rule's queue was full
    std::uint64_t hook_jobs_queued = 0;   ///< hook jobs waiting or running now
    std::uint64_t rearms = 0;
    std::uint64_t incident_record_failures = 0;  ///< failed writes of incident records
    /// Where the memory goes, refreshed every tick: the process as the kernel and the
    /// allocator see it, and what rollguard's own structures hold.
    struct Memory {
        std::uint64_t rss_bytes = 0;
        std::uint64_t anon_bytes = 0;         ///< heap, stacks
        std::uint64_t file_bytes = 0;         ///< the binary and its libraries
        std::uint64_t heap_in_use_bytes = 0;  ///< handed out by the allocator
        std::uint64_t heap_free_bytes = 0;    ///< freed, kept by the allocator
        std::uint64_t windows_bytes = 0;      ///< every source's windows, label-set streams included
        std::uint64_t checkpoint_bytes = 0;   ///< the checkpoint on disk: its base and its journal
    };
    Memory memory;
    std::uint64_t checkpoints = 0;
    std::uint64_t checkpoint_failures = 0;
    /// Bytes written to the checkpoint's base and journal, and bases written (the first
    /// one and each compaction), since the start.
    std::uint64_t checkpoint_bytes_written = 0;
    std::uint64_t checkpoint_bases = 0;
    std::uint64_t rules_state_failures = 0;  ///< failed writes of the rules' state file
    std::optional<rules::TimePoint> last_checkpoint;
    /// True while the last write of that state file failed (disk full, read-only
    /// state_dir); false again after the next successful write.
    bool checkpoint_failing = false;
    bool rules_state_failing = false;
    bool incident_records_failing = false;
    /// Incident records only in memory: their last write failed; retried every
    /// checkpoint_interval until written.
    std::uint64_t incident_records_unsaved = 0;
    /// Config reloads (SIGHUP, POST /api/v1/reload), filled in by whoever reloads (the
    /// `run` command), not by the daemon itself.
    struct Reloads {
        std::uint64_t ok = 0;
        std::uint64_t failed = 0;
        bool last_ok = true;  ///< false after a refused reload, until one succeeds
        std::optional<rules::TimePoint> last_success;  ///< or the start of the first config
        std::string last_error;  ///< diagnostics of the last refused reload
    } reloads;
    bool dry_run = false;
    std::vector<Source> sources;
    std::vector<ScrapeTargetStatus> scrapes;  ///< one per scrape target, in config order
    std::vector<Incident> recent_incidents;
    std::vector<Rule> rules;
    std::vector<Hook> hooks;
    /// False from Daemon::start() until the first preflight pass of the hooks is done
    /// (it runs on its own thread); a snapshot made by hand, or of a daemon that was
    /// never started, has nothing pending.
    bool preflight_checked = true;
    /// The progressive rollout ([rollout]), as of the last tick.
    struct Rollout {
        std::vector<int> stages;
        int stage = -1;  ///< index into stages; -1 at 0 %
        int percent = 0;
        RolloutPhase phase = RolloutPhase::Holding;
        bool paused = false;
        rules::TimePoint entered_at{};
        std::chrono::nanoseconds held{0};  ///< quiet time accrued in this stage
        std::chrono::nanoseconds hold{0};  ///< the current stage's hold (0 at stage -1)
        std::optional<rules::TimePoint> cooldown_until;
        int rollbacks = 0;
        int max_rollbacks = 0;  ///< 0: no limit
        std::uint64_t promotions = 0;
        std::uint64_t rollbacks_total = 0;
        std::vector<std::string> gate;  ///< the gate rules' names (every rule when [rollout] gate is empty)
        /// The whole history the controller keeps (at most 100, newest last);
        /// /api/v1/status shows the last 20, /api/v1/rollout all of it.
        std::vector<RolloutHistoryEntry> history;
        std::uint64_t state_failures = 0;  ///< failed writes of <state_dir>/rollout.json
        bool state_failing = false;        ///< the last write of rollout.json failed
    };
    std::optional<Rollout> rollout;  ///< nullopt without [rollout]
};

/// The status of a rollout controller: its state, the current stage's hold, and the gate
/// rules' names from `config` (every rule when `config.rollout->gate` is empty). Pure.
StatusSnapshot::Rollout rolloutStatus(const RolloutController& controller, const Config& config);

/// A rollout command (`rollguard rollout pause|resume|promote|abort`).
enum class RolloutCommand { Pause, Resume, Promote, Abort };
const char* toString(RolloutCommand command);  ///< "pause", "resume", "promote", "abort"
/// "pause" -> Pause, ...; nullopt for anything else.
std::optional<RolloutCommand> parseRolloutCommand(std::string_view text);

/// The running agent: owns the sources (one tailer thread each), their windows, the
/// rule engine and the hook runner, and wires them on every tick:
///   take each source's parts -> add to its window (event-time parts into the slot of
///   their time, or dropped as too late) -> evaluate rules on each rule's
///   window -> log transitions -> queue hooks (off this thread).
/// Thread-safety: construct, start(), tick()/run() and stop() from one thread;
/// requestStop() and snapshot() from any thread.
class Daemon {
public:
    /// What a daemon hands to its successor on a reload: its sources' read positions and
    /// windows, and the rules' state (timers, latches, baselines).
    struct Handoff {
        Checkpoint checkpoint;
        std::string rules_state;
        std::optional<std::string> rollout_state;  ///< RolloutController::save(); nullopt without [rollout]
        /// A notified alert of a rule that was firing (see `firing_alerts`).
        struct FiringAlert {
            BreachEvent event;               ///< as its fire was sent, with the last values
            std::vector<std::string> hooks;  ///< the notification hooks its resolve would run
        };
        /// Every (rule, group) firing whose fire ran hooks. The next daemon ends the ones
        /// whose episode does not go on under the new config (rule removed, definition
        /// changed: state reset) by sending their resolve to those of `hooks` it still
        /// has that notify, and re-sends the ones that go on to the new config's
        /// `alertmanager` hooks of the rule, whose re-send threads are new.
        std::vector<FiringAlert> firing_alerts;
        /// The last preflight results, by hook name (empty before the first pass). The
        /// next daemon shows them for its hooks of the same names until its own first
        /// pass replaces them, so a reload does not turn /readyz to 503 meanwhile.
        std::vector<HookPreflight> preflight;
    };

    /// Builds everything from a validated config; the clock must outlive the daemon.
    /// Without `handoff` it restores state_dir's checkpoint, rules state and rollout state
    /// (`rollout.json`; a refused or corrupt one is logged and the rollout starts fresh);
    /// with it (a reload), the previous daemon's state instead: sources with the same name
    /// read on from their positions with their windows, rules whose definition did not
    /// change keep their state, changed ones start fresh, and removed ones are dropped.
    Daemon(Config config, const rules::Clock& clock, std::optional<Handoff> handoff = std::nullopt);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    /// Starts the source threads and the preflight thread: it runs every hook's
    /// preflight at once (logging each problem as an error with its hook's
    /// file:line:col) and, with a non-zero `[agent] preflight_interval`, again on that
    /// interval — off the tick thread, since a host name lookup may block up to 2 s.
    void start();
    /// One evaluation at the judge's time for clock.now() (rules::TickSchedule: the
    /// previous evaluation plus one evaluation interval when the clock reads within a
    /// quarter interval of that, so `for` is exact whatever the wake-up jitter; every
    /// tick / interval-th of them is a tick, and so is one the clock moved by anything
    /// else). Between ticks it only collects arrival-time data and evaluates the rules.
    /// Public so tests can drive it with a ManualClock.
    void tick();
    /// Reads what the sources have available now on the calling thread, instead of
    /// their threads (tests; later replay), and scrapes every scrape target once. Only
    /// before start().
    void pollSources();
    /// A liveness callback for run(), e.g. the systemd watchdog ping.
    struct Heartbeat {
        std::function<void()> beat;        ///< empty: no heartbeat
        std::chrono::nanoseconds every{0};  ///< at most this long between beats; 0: once per tick
    };
    /// Evaluates every evaluationInterval() (real time between evaluations) until
    /// requestStop(). Calls `heartbeat.beat` on this thread after every tick and, while
    /// waiting, at least every `heartbeat.every` — so a loop that hangs stops beating.
    void run(const Heartbeat& heartbeat);
    /// run() without a heartbeat.
    void run();
    void requestStop();
    /// Stops the sources, then finishes queued hooks. Idempotent.
    void stop();
    /// Finishes queued hooks and stops, writing no checkpoint and no rules state: for a
    /// daemon built only to act (`rollguard rollback` without a running agent), which
    /// must leave the windows and timers on disk as it found them. Idempotent.
    void stopWithoutSaving();

    /// Stops like stop() (checkpoint and rules state written when state_dir is set,
    /// queued hooks finished) and returns the state for the daemon of the new config.
    /// Idempotent: a second call returns an empty handoff.
    Handoff stopForReload();

    StatusSnapshot snapshot() const;
    /// Each hook's last whole message (a script's output included), by hook name: for the
    /// operator's own terminal (`rollguard rollback` without a state_dir), never for the
    /// status API, whose snapshot carries statusSummary only. Thread-safe.
    std::map<std::string, std::string> lastHookMessages() const;
    const Config& config() const { return config_; }
    /// For tests: waits until queued hooks have run.
    void waitForHooks();

    /// A rollback by hand (`rollguard rollback`, POST /api/v1/rollback): opens a "manual"
    /// incident and queues the rollback hooks — those of `rule` when given, else of every
    /// critical rule, each hook once, in config order. Does not touch the rules' latches
    /// (a rule that fires afterwards still runs its own rollback once; the hooks are
    /// idempotent). Returns the incident id, or an error text in `error` (unknown rule,
    /// no rollback hooks, dry run). Thread-safe.
    std::optional<std::string> rollback(const std::string& reason, const std::string& rule, std::string& error);
    /// Clears every rule's rollback latch (after a fix), at the next tick, and persists
    /// it. Thread-safe: returns at once; the future is ready once the tick applied it.
    std::shared_future<void> requestRearm();

    /// Queues a rollout command; the tick thread applies it at its next tick (after the
    /// controller's own tick) and carries out its action as a tick's (hooks, or "would
    /// run hooks" in dry run). Thread-safe: returns at once; the future holds the
    /// controller's answer once applied. Without [rollout], or once the daemon stopped,
    /// the future is ready at once with ok = false.
    std::shared_future<RolloutController::CommandResult> requestRollout(RolloutCommand command, std::string reason);

private:
    struct SourceState;
    void onHookResult(const std::string& hook, const BreachEvent& event, const HookResult& result);
    void prepareStateDir();
    void restoreCheckpoint();
    void applyCheckpoint(const Checkpoint& checkpoint);
    Checkpoint buildCheckpoint();
    void applyRulesState(std::string_view data, const std::string& from);
    /// Moves what the sources recorded into their series (with the matching positions);
    /// between ticks (`on_tick` false) event-time sources wait for the tick.
    void collect(rules::TimePoint now, bool on_tick);
    void writeCheckpointNow(rules::TimePoint now);
    /// A whole checkpoint, streamed series by series into a new base.
    std::optional<std::string> writeCheckpointBase();
    /// What changed since the last checkpoint, appended to the journal.
    std::optional<std::string> appendCheckpointChanges();
    /// After a checkpoint is on disk: every series' slots are in it.
    void markCheckpointSaved();
    BreachEvent makeEvent(const rules::Notification& n) const;
    /// The Handoff::firing_alerts of this daemon's rules now.
    std::vector<Handoff::FiringAlert> firingAlerts() const;
    /// On a reload: resolves or re-sends the previous daemon's firing alerts (Handoff).
    void carryFiringAlerts(const std::vector<Handoff::FiringAlert>& alerts);
    void refreshRuleSnapshot();
    void restoreRulesState();
    /// Persists the engine's state (timers, latches, baselines) to state_dir/rules.state.
    /// A failure is counted each time, logged once per run of failures (and once when
    /// writes work again); the latches stay in memory and the rules keep evaluating.
    /// Returns false when the write failed (tick thread).
    bool writeRulesState();
    /// Opens the incident record of a critical Fire and returns the event its hooks get.
    /// The record is written before the first hook runs; when it cannot be written (disk
    /// full, read-only state_dir) the rollback still runs: the failure is logged and
    /// counted, the record is kept in memory and written by retryUnsavedIncidents() once
    /// the disk takes it. A watchdog that cannot roll back because /var is full is worse
    /// than an incident whose record is late. Tick thread.
    BreachEvent openIncident(const rules::Notification& n, BreachEvent event);
    /// Writes the records whose last write failed, at most every checkpoint_interval
    /// (tick thread; takes incidents_mutex_).
    void retryUnsavedIncidents();
    /// Re-queues the unfinished hooks of incident records left by a previous run.
    void resumeIncidents();
    /// Saves a record (incidents_mutex_ held). A failure is counted, logged once per run
    /// of failures, and the record is kept in unsaved_incidents_ to be written later.
    void saveIncident(const IncidentRecord& record);
    /// Puts a record into snapshot_.recent_incidents (mutex_ held by the caller).
    void noteIncident(const IncidentRecord& record);
    void onHookStart(const std::string& hook, const BreachEvent& event);
    void applyPendingRearm();
    /// Clears every rule's rollback latch and persists it (tick thread).
    void rearmRules();
    /// The controller's tick, the queued commands, their actions, persistence.
    void tickRollout(rules::TimePoint now);
    std::vector<GateRule> gateRules() const;
    void carryOut(const RolloutAction& action, rules::TimePoint now);
    void restoreRollout(const std::optional<Handoff>& handoff);
    /// Writes rollout.json when the state changed (at once) or only the held time grew
    /// (at most every checkpoint_interval); `force`: whenever it differs from the file.
    void persistRollout(rules::TimePoint now, bool force);
    void refreshRolloutSnapshot();
    /// Answers the commands still queued (the daemon stops).
    void refusePendingRolloutCommands(const std::string& why);
    /// One preflight of every hook into snapshot_.hooks; logs every problem when
    /// `log_all`, else only the changes since the last pass. Any thread but the tick's.
    void runPreflight(bool log_all);
    /// Stops and joins the preflight thread (idempotent).
    void stopPreflight();

    Config config_;
    const rules::Clock& clock_;
    rules::TickSchedule schedule_;
    std::string host_;
    std::vector<std::unique_ptr<SourceState>> sources_;
    std::unique_ptr<Judge> judge_;
    std::unique_ptr<ScrapeLoop> scrapes_;
    std::vector<std::optional<WindowHandle>> latency_windows_;  // per log source: its 1 min window
    std::unique_ptr<HookRunner> hooks_;

    mutable std::mutex mutex_;  // guards snapshot_
    StatusSnapshot snapshot_;

    std::string checkpoint_path_;  // empty: no checkpoints
    std::unique_ptr<CheckpointStore> checkpoint_store_;  // null without checkpoints
    std::string rules_state_path_;  // empty: rules' state not persisted
    std::chrono::steady_clock::time_point last_checkpoint_{};
    /// How often the tick hands free heap pages back (releaseFreeMemory), and when it last did.
    static constexpr std::chrono::seconds kTrimEvery{10};
    std::chrono::steady_clock::time_point last_trim_{};
    bool checkpoint_dirty_ = true;  // new data or positions since the last checkpoint

    std::unique_ptr<IncidentLog> incident_log_;  // null without state_dir
    std::mutex incidents_mutex_;                 // guards open_incidents_ and incident_log_ use
    std::map<std::string, IncidentRecord> open_incidents_;  // by id: hooks not all finished
    // By id: the latest version of each record whose last write failed (guarded by
    // incidents_mutex_); written again by retryUnsavedIncidents().
    std::map<std::string, IncidentRecord> unsaved_incidents_;
    std::chrono::steady_clock::time_point last_incident_retry_{};
    std::mutex rearm_mutex_;
    std::optional<std::promise<void>> rearm_promise_;
    std::shared_future<void> rearm_future_;

    std::unique_ptr<RolloutController> rollout_;  // null without [rollout]
    std::string rollout_path_;                    // empty: the rollout state is not persisted
    std::optional<RolloutState> rollout_saved_;   // as last written (or restored)
    std::optional<rules::TimePoint> rollout_saved_at_;
    struct PendingRolloutCommand {
        RolloutCommand command;
        std::string reason;
        std::promise<RolloutController::CommandResult> done;
    };
    std::mutex rollout_mutex_;  // guards rollout_commands_ and rollout_closed_
    std::vector<PendingRolloutCommand> rollout_commands_;
    bool rollout_closed_ = false;  // stopped: commands are refused at once

    std::map<std::string, std::string> last_messages_;  // guarded by mutex_; see lastHookMessages
    bool preflight_seeded_ = false;  // every hook shows the previous daemon's result (a reload)
    std::thread preflight_thread_;  // re-runs the preflight every preflight_interval
    std::mutex preflight_mutex_;    // guards preflight_stop_
    std::condition_variable preflight_cv_;
    bool preflight_stop_ = false;

    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stop_requested_ = false;
    bool started_ = false;
    bool stopped_ = false;
};

/// Human rendering of a metric value in its unit: latency metrics as durations
/// ("412ms"), ratios and counts as numbers.
std::string formatMetricValue(const rules::MetricSpec& metric, double value);

}  // namespace rollguard::agent
