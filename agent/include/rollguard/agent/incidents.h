#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollguard/agent/hooks.h"
#include "rollguard/rules/clock.h"

namespace rollguard::agent {

/// Where one hook of an incident stands. The record is rewritten at every change, so
/// after a crash it tells which hooks completed (never run again), which one was
/// interrupted (`Running`: run again on resume, see IncidentRecord) and which never
/// started.
/// Spooled: a webhook's first attempt did not deliver and its delivery goes on in the
/// background; the step is not finished (a restart runs it again, deduplicated by its
/// spool and Idempotency-Key) until its final Ok or Failed arrives.
enum class HookStepStatus { Pending, Running, Ok, Failed, Skipped, Spooled };
const char* toString(HookStepStatus s);
std::optional<HookStepStatus> hookStepStatusFromString(std::string_view s);

struct IncidentHookStep {
    std::string hook;
    HookStepStatus status = HookStepStatus::Pending;
    std::string message;
    std::chrono::milliseconds duration{0};
    int attempts = 0;
    std::optional<rules::TimePoint> started;
    std::optional<rules::TimePoint> finished;
    int runs = 0;  ///< times it was started (2 after a crash interrupted it once)
};

/// The window statistics of the breaching rule at the moment it fired: what a post-mortem
/// wants without re-reading logs. Latency figures in seconds; absent when the source has
/// no latency or the window had no samples.
struct IncidentStats {
    std::int64_t events = 0;
    std::int64_t errors = 0;
    std::optional<double> error_ratio;
    std::optional<double> rate_per_second;
    std::optional<double> p50, p90, p99, p999, mean, max;
};

/// One rollback: why it happened, what the rules saw, and each hook's outcome.
/// Stored as `<state_dir>/incidents/<id>.json` (0600, written atomically).
///
/// Lifecycle: the record is written with every hook Pending *before* the first hook runs
/// (after the rules' latch is on disk); each hook is marked Running before it starts and
/// Ok/Failed/Skipped when it ends (Spooled, then Ok/Failed, for a webhook whose delivery
/// went on in the background). `complete` becomes true when no hook is left. A daemon
/// that starts and finds incomplete records resumes them: hooks marked Ok/Failed/Skipped
/// are not run again; a Running hook was interrupted by the crash and is run again
/// (at-least-once for that one hook: env and flag files are idempotent, webhooks carry
/// the same Idempotency-Key, scripts should be written to tolerate it); Pending hooks run
/// in order.
struct IncidentRecord {
    std::string id;      ///< incidentId(event) for a rule; "manual-<unix ms>" by hand
    std::string kind;    ///< "rule" | "manual"
    std::string reason;  ///< manual: the operator's --reason; rule: the event summary
    rules::TimePoint opened{};
    BreachEvent event;   ///< what the hooks are given (incident_id = id)
    IncidentStats stats;
    /// The last raw lines of the rule's source up to the read position (newest last),
    /// "<file>: <line>" when the source follows several files. Bounded in count and size.
    std::vector<std::string> log_lines;
    std::vector<IncidentHookStep> hooks;
    bool complete = false;

    /// Appends a Pending step per hook name, in order.
    void addHooks(const std::vector<std::string>& names);
    /// Hooks not yet finished (Pending, Running or Spooled), in order.
    std::vector<std::string> remainingHooks() const;
    /// The outcomes of the finished hooks, in order, for BreachEvent::steps.
    std::vector<HookStep> finishedSteps() const;
    /// Marks the hook step `hook` (first not-finished one of that name).
    IncidentHookStep* step(std::string_view hook);
};

/// The record as JSON (one object; times as RFC 3339 and as Unix nanoseconds so reading
/// it back is exact).
std::string incidentToJson(const IncidentRecord& record);
/// Reads incidentToJson's output. nullopt with `error` set on anything else.
std::optional<IncidentRecord> incidentFromJson(std::string_view json, std::string& error);

/// The incident records of a state directory, `<state_dir>/incidents/`.
/// Thread-safety: none; callers serialise (the daemon holds its incidents mutex).
class IncidentLog {
public:
    /// `max_records`: completed records beyond this many are deleted, oldest first, each
    /// time a record is saved. Incomplete records are never deleted.
    IncidentLog(std::string state_dir, std::size_t max_records);

    const std::string& directory() const { return dir_; }
    /// Writes the record atomically (0600), creating the directory (0700) if needed.
    /// Returns an error text, or nullopt.
    std::optional<std::string> save(const IncidentRecord& record);
    /// Every readable record, oldest first (by opened, then id). Unreadable files are
    /// skipped and described in `problems` when given.
    std::vector<IncidentRecord> list(std::vector<std::string>* problems = nullptr) const;
    /// One record by id, or by a unique prefix of it.
    std::optional<IncidentRecord> find(std::string_view id_or_prefix) const;

private:
    void prune();
    std::string dir_;
    std::size_t max_records_;
};

/// The last `max_lines` complete lines of `path` that end at or before byte `end`
/// (nullopt: the file's size), oldest first, without their newlines; each cut to
/// `max_line_bytes` (with "…" appended when cut). Reads at most the last 1 MiB before
/// `end`. Empty when the file cannot be read.
std::vector<std::string> tailLines(const std::string& path, std::optional<std::uint64_t> end, std::size_t max_lines,
                                   std::size_t max_line_bytes = 2048);

}  // namespace rollguard::agent
