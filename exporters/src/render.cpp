#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iterator>
#include <limits>
#include <sstream>

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "rollguard/agent/json_writer.h"
#include "rollguard/agent/rule_value.h"
#include "rollguard/exporters/http_server.h"
#include "rollguard/rules/duration.h"

#ifndef ROLLGUARD_VERSION
#define ROLLGUARD_VERSION "0.1.0"
#endif

namespace rollguard::exporters {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

double seconds(rules::TimePoint t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

/// The memory breakdown's parts, named as /metrics labels them and /api/v1/status keys
/// them (with "_bytes"), in one order for both.
std::array<std::pair<const char*, std::uint64_t>, 7> memoryParts(const agent::StatusSnapshot::Memory& m) {
    return {{{"rss", m.rss_bytes},
             {"anon", m.anon_bytes},
             {"file", m.file_bytes},
             {"heap_in_use", m.heap_in_use_bytes},
             {"heap_free", m.heap_free_bytes},
             {"windows", m.windows_bytes},
             {"checkpoint", m.checkpoint_bytes}}};
}

double stateValue(rules::AlertState s) {
    switch (s) {
        case rules::AlertState::Pending:
            return 1;
        case rules::AlertState::Firing:
            return 2;
        default:
            return 0;
    }
}

class Families {
public:
    MetricFamily& family(const std::string& name, const std::string& help, MetricType type) {
        families_.push_back(MetricFamily{name, help, type, {}});
        return families_.back();
    }
    std::vector<MetricFamily> take() { return {std::make_move_iterator(families_.begin()), std::make_move_iterator(families_.end())}; }

private:
    // A deque, so the references family() hands out stay valid as more are added.
    std::deque<MetricFamily> families_;
};

void add(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter) {
        m.counter.value = value;
    } else {
        m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
}

}  // namespace

std::string renderMetrics(const agent::StatusSnapshot& s) {
    Families fams;
    add(fams.family("rollguard_build_info", "rollguard build information.", MetricType::Gauge),
        {{"version", ROLLGUARD_VERSION}}, 1);
    add(fams.family("rollguard_start_time_seconds", "When the agent started, seconds since the epoch.",
                    MetricType::Gauge),
        {}, seconds(s.started));
    add(fams.family("rollguard_evaluations_total", "Rule evaluation ticks run.", MetricType::Counter), {},
        static_cast<double>(s.ticks));
    add(fams.family("rollguard_last_evaluation_timestamp_seconds",
                    "When the rules were last evaluated, seconds since the epoch (0 before the first).",
                    MetricType::Gauge),
        {}, s.last_tick ? seconds(*s.last_tick) : 0.0);
    add(fams.family("rollguard_incidents_total", "Critical rules that went firing.", MetricType::Counter), {},
        static_cast<double>(s.incidents));
    add(fams.family("rollguard_incidents_open", "Incidents whose rollback hooks have not all finished.",
                    MetricType::Gauge),
        {}, static_cast<double>(s.incidents_open));
    add(fams.family("rollguard_manual_rollbacks_total", "Rollbacks started by hand (rollguard rollback).",
                    MetricType::Counter),
        {}, static_cast<double>(s.manual_rollbacks));
    add(fams.family("rollguard_hook_jobs_dropped_total",
                    "Hook jobs dropped unrun because their rule already had the most jobs waiting (256).",
                    MetricType::Counter),
        {}, static_cast<double>(s.hook_jobs_dropped));
    add(fams.family("rollguard_hook_jobs_queued", "Hook jobs (one event's list of hooks) waiting or running now.",
                    MetricType::Gauge),
        {}, static_cast<double>(s.hook_jobs_queued));
    add(fams.family("rollguard_rearms_total", "Times the rollback latches were cleared (rollguard rearm).",
                    MetricType::Counter),
        {}, static_cast<double>(s.rearms));
    add(fams.family("rollguard_incident_record_failures_total", "Incident records that could not be written.",
                    MetricType::Counter),
        {}, static_cast<double>(s.incident_record_failures));

    add(fams.family("rollguard_rules_state_failures_total", "Failed writes of the rules' state file.",
                    MetricType::Counter),
        {}, static_cast<double>(s.rules_state_failures));
    auto& reloads = fams.family("rollguard_config_reloads_total",
                                "Config reloads (SIGHUP, POST /api/v1/reload) by result.", MetricType::Counter);
    add(reloads, {{"result", "success"}}, static_cast<double>(s.reloads.ok));
    add(reloads, {{"result", "failure"}}, static_cast<double>(s.reloads.failed));
    add(fams.family("rollguard_config_last_reload_successful",
                    "1 when the last reload attempt succeeded (or none was made), 0 after a refused one.",
                    MetricType::Gauge),
        {}, s.reloads.last_ok ? 1 : 0);
    add(fams.family("rollguard_config_last_reload_success_timestamp_seconds",
                    "When the running config was loaded, seconds since the epoch.", MetricType::Gauge),
        {}, s.reloads.last_success ? seconds(*s.reloads.last_success) : 0.0);
    auto& memory = fams.family("rollguard_memory_bytes",
                               "Where the agent's memory goes: rss, anon (heap, stacks), file (binary and "
                               "libraries), heap_in_use and heap_free (the allocator's view), windows (every "
                               "source's windows) and checkpoint (the checkpoint on disk: base and journal).",
                               MetricType::Gauge);
    for (const auto& [part, bytes] : memoryParts(s.memory)) {
        add(memory, {{"part", part}}, static_cast<double>(bytes));
    }
    add(fams.family("rollguard_checkpoints_total", "Checkpoints of read positions and windows written.",
                    MetricType::Counter),
        {}, static_cast<double>(s.checkpoints));
    add(fams.family("rollguard_checkpoint_failures_total", "Checkpoints that could not be written.",
                    MetricType::Counter),
        {}, static_cast<double>(s.checkpoint_failures));
    add(fams.family("rollguard_checkpoint_written_bytes_total",
                    "Bytes written to the checkpoint's base and journal.", MetricType::Counter),
        {}, static_cast<double>(s.checkpoint_bytes_written));
    add(fams.family("rollguard_checkpoint_bases_total",
                    "Whole checkpoints (bases) written: the first one and each compaction of the journal.",
                    MetricType::Counter),
        {}, static_cast<double>(s.checkpoint_bases));
    auto& failing = fams.family("rollguard_state_write_failing",
                                "1 while the last write of that state file failed (disk full, read-only state_dir).",
                                MetricType::Gauge);
    add(failing, {{"file", "checkpoint"}}, s.checkpoint_failing ? 1 : 0);
    add(failing, {{"file", "rules_state"}}, s.rules_state_failing ? 1 : 0);
    add(failing, {{"file", "incident_records"}}, s.incident_records_failing ? 1 : 0);
    if (s.rollout) {
        add(failing, {{"file", "rollout"}}, s.rollout->state_failing ? 1 : 0);
    }
    add(fams.family("rollguard_incident_records_unsaved",
                    "Incident records kept in memory because their last write failed.", MetricType::Gauge),
        {}, static_cast<double>(s.incident_records_unsaved));
    add(fams.family("rollguard_last_checkpoint_timestamp_seconds",
                    "When the last checkpoint was written, seconds since the epoch (0: none yet).", MetricType::Gauge),
        {}, s.last_checkpoint ? seconds(*s.last_checkpoint) : 0.0);

    auto& lines = fams.family("rollguard_source_lines_total", "Complete log lines read, good and bad.",
                              MetricType::Counter);
    auto& bytes = fams.family("rollguard_source_bytes_total", "Bytes read from log files.", MetricType::Counter);
    auto& bad = fams.family("rollguard_source_bad_lines_total", "Log lines skipped, by reason.",
                            MetricType::Counter);
    auto& files = fams.family("rollguard_source_files", "Files currently followed.", MetricType::Gauge);
    auto& rotations = fams.family("rollguard_source_rotations_total", "File rotations (rename) detected.",
                                  MetricType::Counter);
    auto& truncations = fams.family("rollguard_source_truncations_total",
                                    "File truncations (copytruncate) detected.", MetricType::Counter);
    auto& read_errors = fams.family("rollguard_source_read_errors_total", "Errors reading log files.",
                                    MetricType::Counter);
    auto& identity = fams.family("rollguard_source_identity_changes_total",
                                 "Files read from their start because their identity (inode, fingerprint) changed.",
                                 MetricType::Counter);
    auto& window_bytes = fams.family("rollguard_source_window_bytes",
                                     "Memory held by the source's sliding windows, in bytes.", MetricType::Gauge);
    auto& label_sets = fams.family("rollguard_source_label_sets",
                                   "Distinct label sets seen (the overflow set included).", MetricType::Gauge);
    auto& label_overflow = fams.family("rollguard_source_label_overflow_total",
                                       "Lines mapped to the __other__ label set after max_label_sets.",
                                       MetricType::Counter);
    auto& dropped = fams.family("rollguard_source_lines_dropped_total",
                                "Good lines not counted in the windows, by reason (too_late: older than lateness).",
                                MetricType::Counter);
    auto& lag = fams.family("rollguard_source_lag_bytes",
                            "Bytes of the followed files not read yet (file size - read offset).",
                            MetricType::Gauge);
    // A summary over a sliding minute: its _count and _sum are the minute's, not totals
    // since start (rate() over them is meaningless; read the quantiles).
    auto& latency = fams.family("rollguard_source_latency_seconds",
                                "Latency of the source's events over the last minute (quantiles NaN without events).",
                                MetricType::Summary);
    for (const auto& src : s.sources) {
        const ClientMetric::Label l{"source", src.name};
        std::uint64_t behind = 0;
        for (const auto& f : src.progress) {
            behind += f.size > f.offset ? f.size - f.offset : 0;
        }
        add(lag, {l}, static_cast<double>(behind));
        if (src.latency) {
            const double nan = std::numeric_limits<double>::quiet_NaN();
            const bool any = src.latency->count > 0;
            ClientMetric m;
            m.label = {l};
            m.summary.sample_count = static_cast<std::uint64_t>(src.latency->count);
            m.summary.sample_sum = src.latency->sum;
            m.summary.quantile = {{0.5, any ? src.latency->p50 : nan},
                                  {0.9, any ? src.latency->p90 : nan},
                                  {0.99, any ? src.latency->p99 : nan},
                                  {0.999, any ? src.latency->p999 : nan}};
            latency.metric.push_back(std::move(m));
        }
        add(window_bytes, {l}, static_cast<double>(src.window_bytes));
        add(label_sets, {l}, static_cast<double>(src.label_sets));
        add(label_overflow, {l}, static_cast<double>(src.label_overflow));
        add(dropped, {l, {"reason", "too_late"}}, static_cast<double>(src.too_late));
        add(lines, {l}, static_cast<double>(src.lines));
        add(bytes, {l}, static_cast<double>(src.bytes));
        add(bad, {l, {"reason", "invalid_json"}}, static_cast<double>(src.bad_invalid_json));
        add(bad, {l, {"reason", "not_an_object"}}, static_cast<double>(src.bad_not_object));
        add(bad, {l, {"reason", "bad_latency"}}, static_cast<double>(src.bad_latency));
        add(bad, {l, {"reason", "too_long"}}, static_cast<double>(src.bad_too_long));
        add(bad, {l, {"reason", "invalid_utf8"}}, static_cast<double>(src.bad_invalid_utf8));
        add(bad, {l, {"reason", "bad_timestamp"}}, static_cast<double>(src.bad_timestamp));
        add(files, {l}, static_cast<double>(src.files.size()));
        add(rotations, {l}, static_cast<double>(src.rotations));
        add(truncations, {l}, static_cast<double>(src.truncations));
        add(read_errors, {l}, static_cast<double>(src.read_errors));
        add(identity, {l}, static_cast<double>(src.identity_changes));
    }

    auto& scrape_up = fams.family("rollguard_scrape_up", "1 when the target's last scrape succeeded, else 0.",
                                  MetricType::Gauge);
    auto& scrape_duration = fams.family("rollguard_scrape_duration_seconds",
                                        "Duration of the target's last scrape.", MetricType::Gauge);
    auto& scrapes = fams.family("rollguard_scrapes_total", "Scrapes of the target, good and failed.",
                                MetricType::Counter);
    auto& scrape_errors = fams.family("rollguard_scrape_errors_total",
                                      "Failed scrapes by kind (dns, connect, timeout, tls, http_status, "
                                      "too_large, decode, parse, missing_value, credentials, ...).",
                                      MetricType::Counter);
    auto& scrape_samples = fams.family("rollguard_scrape_samples",
                                       "Samples (or values) the target's last good scrape returned.",
                                       MetricType::Gauge);
    auto& scrape_resets = fams.family("rollguard_scrape_resets_total",
                                      "Resets (a value going down) seen in the target's counter series.", MetricType::Counter);
    for (const auto& t : s.scrapes) {
        std::vector<ClientMetric::Label> l{{"series", t.series}, {"source", t.source}, {"target", t.target}};
        add(scrape_up, l, t.up ? 1 : 0);
        add(scrape_duration, l, t.last_duration_seconds);
        add(scrapes, l, static_cast<double>(t.scrapes));
        add(scrape_samples, l, static_cast<double>(t.samples));
        add(scrape_resets, l, static_cast<double>(t.counter_resets));
        for (const auto& [kind, n] : t.errors) {
            auto with_kind = l;
            with_kind.insert(with_kind.begin(), ClientMetric::Label{"kind", kind});
            add(scrape_errors, with_kind, static_cast<double>(n));
        }
    }

    auto& state = fams.family("rollguard_rule_state", "Rule state: 0 ok, 1 pending, 2 firing.", MetricType::Gauge);
    auto& value = fams.family("rollguard_rule_value",
                              "The rule's metric over its window (seconds for latency); NaN without data.",
                              MetricType::Gauge);
    auto& threshold = fams.family("rollguard_rule_threshold", "The rule's threshold.", MetricType::Gauge);
    auto& samples = fams.family("rollguard_rule_samples", "Samples in the rule's window at the last evaluation.",
                                MetricType::Gauge);
    auto& latched = fams.family("rollguard_rule_rollback_latched",
                                "1 when the rule's rollback has run and is latched for this incident.",
                                MetricType::Gauge);
    for (const auto& r : s.rules) {
        std::vector<ClientMetric::Label> l{{"group", r.group}, {"rule", r.name}, {"severity", r.severity}};
        add(state, l, stateValue(r.state));
        add(value, l, r.value.value_or(std::numeric_limits<double>::quiet_NaN()));
        add(threshold, l, r.threshold);
        add(samples, l, static_cast<double>(r.samples));
        add(latched, l, r.latched ? 1 : 0);
    }

    auto& runs = fams.family("rollguard_hook_runs_total", "Hook runs by outcome.", MetricType::Counter);
    auto& duration = fams.family("rollguard_hook_last_duration_seconds", "Duration of the hook's last run.",
                                 MetricType::Gauge);
    auto& spooled = fams.family("rollguard_hook_spooled_total",
                                "Webhook deliveries written to the on-disk spool before their first attempt.",
                                MetricType::Counter);
    auto& spool_delivered = fams.family("rollguard_hook_spool_delivered_total",
                                        "Spooled webhook deliveries delivered by a later retry.", MetricType::Counter);
    auto& spool_dropped = fams.family("rollguard_hook_spool_dropped_total",
                                      "Spooled webhook deliveries dropped: spool full (oldest first) or rejected 4xx.",
                                      MetricType::Counter);
    auto& spool_pending = fams.family("rollguard_hook_spool_pending",
                                      "Webhook deliveries waiting in the spool now.", MetricType::Gauge);
    auto& spool_write_failures = fams.family(
        "rollguard_hook_spool_write_failures_total",
        "Spool files that could not be written (the delivery stays in memory).", MetricType::Counter);
    for (const auto& h : s.hooks) {
        if (h.type == std::string("webhook") || h.type == std::string("alertmanager")) {
            const std::vector<ClientMetric::Label> l{{"hook", h.name}};
            add(spooled, l, static_cast<double>(h.delivery.spooled));
            add(spool_delivered, l, static_cast<double>(h.delivery.spool_delivered));
            add(spool_dropped, l, static_cast<double>(h.delivery.spool_dropped));
            add(spool_pending, l, static_cast<double>(h.delivery.spool_pending));
            add(spool_write_failures, l, static_cast<double>(h.delivery.spool_write_failures));
        }
    }
    auto& deferred = fams.family(
        "rollguard_hook_deferred_total",
        "Webhook runs whose first attempt did not deliver: the next steps went on while delivery continued in the "
        "background (counted in rollguard_hook_runs_total when it ends).",
        MetricType::Counter);
    for (const auto& h : s.hooks) {
        if (h.type == std::string("webhook")) {
            add(deferred, {{"hook", h.name}}, static_cast<double>(h.deferred));
        }
    }
    auto& ready = fams.family("rollguard_hook_ready",
                              "1 when the hook's last preflight found nothing that would make it fail (target "
                              "writable, script executable, secrets readable, URL host resolvable), else 0.",
                              MetricType::Gauge);
    for (const auto& h : s.hooks) {
        add(ready, {{"hook", h.name}}, h.ready ? 1 : 0);
    }
    for (const auto& h : s.hooks) {
        add(runs, {{"hook", h.name}, {"outcome", "failure"}, {"type", h.type}}, static_cast<double>(h.failed));
        add(runs, {{"hook", h.name}, {"outcome", "success"}, {"type", h.type}}, static_cast<double>(h.ok));
        add(duration, {{"hook", h.name}, {"type", h.type}}, h.last_duration_seconds);
    }

    if (s.rollout) {
        const auto& r = *s.rollout;
        add(fams.family("rollguard_rollout_stage_percent", "The rollout's traffic percentage now ([rollout] stages).",
                        MetricType::Gauge),
            {}, r.percent);
        add(fams.family("rollguard_rollout_stage", "Index of the rollout's current stage in stages (-1: at 0%).",
                        MetricType::Gauge),
            {}, r.stage);
        auto& phase = fams.family("rollguard_rollout_phase", "1 for the rollout's current phase, 0 for the others.",
                                  MetricType::Gauge);
        for (const auto p : {agent::RolloutPhase::Holding, agent::RolloutPhase::AwaitingPromote,
                             agent::RolloutPhase::Cooldown, agent::RolloutPhase::Complete, agent::RolloutPhase::Failed,
                             agent::RolloutPhase::Aborted}) {
            add(phase, {{"phase", agent::toString(p)}}, p == r.phase ? 1 : 0);
        }
        add(fams.family("rollguard_rollout_paused", "1 while the rollout is paused (rollguard rollout pause).",
                        MetricType::Gauge),
            {}, r.paused ? 1 : 0);
        add(fams.family("rollguard_rollout_held_seconds",
                        "Quiet time accrued in the current stage toward its hold, in seconds.", MetricType::Gauge),
            {}, std::chrono::duration<double>(r.held).count());
        add(fams.family("rollguard_rollout_hold_seconds", "The current stage's hold, in seconds.", MetricType::Gauge),
            {}, std::chrono::duration<double>(r.hold).count());
        add(fams.family("rollguard_rollout_promotions_total", "Rollout promotions, automatic and manual.",
                        MetricType::Counter),
            {}, static_cast<double>(r.promotions));
        add(fams.family("rollguard_rollout_rollbacks_total", "Rollout rollbacks (a critical gate rule fired).",
                        MetricType::Counter),
            {}, static_cast<double>(r.rollbacks_total));
        add(fams.family("rollguard_rollout_state_failures_total", "Failed writes of the rollout's state file.",
                        MetricType::Counter),
            {}, static_cast<double>(r.state_failures));
    }

    prometheus::TextSerializer serializer;
    std::ostringstream out;
    serializer.Serialize(out, fams.take());
    return out.str();
}

std::string renderStatusJson(const agent::StatusSnapshot& s) {
    agent::JsonWriter w;
    auto optionalTime = [&w](const std::optional<rules::TimePoint>& t) {
        if (t) {
            w.value(agent::formatRfc3339(*t));
        } else {
            w.null();
        }
    };
    w.beginObject();
    w.key("version").value(ROLLGUARD_VERSION);
    w.key("config").value(s.config_path);
    w.key("started").value(agent::formatRfc3339(s.started));
    w.key("last_evaluation");
    optionalTime(s.last_tick);
    w.key("evaluations").value(s.ticks);
    w.key("incidents").value(s.incidents);
    w.key("incidents_open").value(s.incidents_open);
    w.key("manual_rollbacks").value(s.manual_rollbacks);
    w.key("hook_jobs_dropped").value(s.hook_jobs_dropped);
    w.key("hook_jobs_queued").value(s.hook_jobs_queued);
    w.key("rearms").value(s.rearms);
    w.key("dry_run").value(s.dry_run);
    const auto not_ready = notReadyReasons(s);
    w.key("ready").value(not_ready.empty());
    w.key("not_ready").beginArray();
    for (const auto& reason : not_ready) {
        w.value(reason);
    }
    w.endArray();
    w.key("reloads").beginObject();
    w.key("succeeded").value(s.reloads.ok);
    w.key("failed").value(s.reloads.failed);
    w.key("last_successful").value(s.reloads.last_ok);
    w.key("last_success");
    optionalTime(s.reloads.last_success);
    w.key("last_error").value(s.reloads.last_error);
    w.endObject();
    w.key("incident_record_failures").value(s.incident_record_failures);
    w.key("memory").beginObject();
    for (const auto& [part, bytes] : memoryParts(s.memory)) {
        w.key(std::string(part) + "_bytes").value(bytes);
    }
    w.endObject();
    w.key("checkpoints").beginObject();
    w.key("written").value(s.checkpoints);
    w.key("failures").value(s.checkpoint_failures);
    w.key("bytes_written").value(s.checkpoint_bytes_written);
    w.key("bases").value(s.checkpoint_bases);
    w.key("last");
    optionalTime(s.last_checkpoint);
    w.key("rules_state_failures").value(s.rules_state_failures);
    w.key("failing").value(s.checkpoint_failing);
    w.key("rules_state_failing").value(s.rules_state_failing);
    w.key("incident_records_failing").value(s.incident_records_failing);
    w.key("incident_records_unsaved").value(s.incident_records_unsaved);
    w.endObject();
    w.key("rules").beginArray();
    for (const auto& r : s.rules) {
        w.beginObject();
        w.key("name").value(r.name);
        w.key("group").value(r.group);
        w.key("severity").value(r.severity);
        w.key("state").value(rules::toString(r.state));
        w.key("source").value(r.source);
        w.key("metric").value(r.metric);
        w.key("comparison").value(r.comparison);
        w.key("threshold").value(r.threshold);
        w.key("value");
        if (r.value) {
            w.value(*r.value);
        } else {
            w.null();
        }
        w.key("samples").value(r.samples);
        agent::writeValueFields(w, agent::ValueReading{r.value, r.threshold, r.baseline, r.mann_whitney});
        w.key("window").value(rules::formatDuration(r.window));
        w.key("for").value(rules::formatDuration(r.for_));
        w.key("since");
        optionalTime(r.since);
        w.key("last_evaluation");
        optionalTime(r.last_evaluation);
        w.key("rollback_latched").value(r.latched);
        w.key("inhibited").value(r.inhibited);
        w.key("dry_run").value(r.dry_run);
        w.endObject();
    }
    w.endArray();
    w.key("sources").beginArray();
    for (const auto& src : s.sources) {
        w.beginObject();
        w.key("name").value(src.name);
        w.key("files").beginArray();
        for (const auto& f : src.files) {
            w.value(f);
        }
        w.endArray();
        w.key("lines").value(src.lines);
        w.key("bytes").value(src.bytes);
        w.key("bad_lines").beginObject();
        w.key("invalid_json").value(src.bad_invalid_json);
        w.key("not_an_object").value(src.bad_not_object);
        w.key("bad_latency").value(src.bad_latency);
        w.key("too_long").value(src.bad_too_long);
        w.key("invalid_utf8").value(src.bad_invalid_utf8);
        w.key("bad_timestamp").value(src.bad_timestamp);
        w.endObject();
        w.key("label_sets").value(src.label_sets);
        w.key("label_overflow_total").value(src.label_overflow);
        w.key("too_late").value(src.too_late);
        w.key("progress").beginArray();
        for (const auto& f : src.progress) {
            w.beginObject();
            w.key("path").value(f.path);
            w.key("offset").value(f.offset);
            w.key("size").value(f.size);
            w.key("lag_bytes").value(f.size > f.offset ? f.size - f.offset : 0);
            w.endObject();
        }
        w.endArray();
        if (src.latency) {
            w.key("latency_last_minute").beginObject();
            w.key("events").value(src.latency->count);
            if (src.latency->count > 0) {
                w.key("p50_seconds").value(src.latency->p50);
                w.key("p90_seconds").value(src.latency->p90);
                w.key("p99_seconds").value(src.latency->p99);
                w.key("p999_seconds").value(src.latency->p999);
            }
            w.endObject();
        }
        w.key("rotations").value(src.rotations);
        w.key("truncations").value(src.truncations);
        w.key("read_errors").value(src.read_errors);
        w.key("identity_changes").value(src.identity_changes);
        w.key("window_bytes").value(src.window_bytes);
        w.endObject();
    }
    w.endArray();
    w.key("recent_incidents").beginArray();
    for (const auto& i : s.recent_incidents) {
        w.beginObject();
        w.key("id").value(i.id);
        w.key("kind").value(i.kind);
        w.key("rule").value(i.rule);
        w.key("reason").value(i.reason);
        w.key("opened").value(agent::formatRfc3339(i.opened));
        w.key("complete").value(i.complete);
        w.key("hooks_ok").value(static_cast<std::uint64_t>(i.hooks_ok));
        w.key("hooks_failed").value(static_cast<std::uint64_t>(i.hooks_failed));
        w.key("hooks_pending").value(static_cast<std::uint64_t>(i.hooks_pending));
        w.endObject();
    }
    w.endArray();
    w.key("scrapes").beginArray();
    for (const auto& t : s.scrapes) {
        w.beginObject();
        w.key("source").value(t.source);
        w.key("type").value(t.type);
        w.key("target").value(t.target);
        w.key("series").value(t.series);
        w.key("up").value(t.up);
        w.key("scrapes").value(t.scrapes);
        w.key("errors").beginObject();
        for (const auto& [kind, n] : t.errors) {
            w.key(kind).value(n);
        }
        w.endObject();
        w.key("last_scrape");
        optionalTime(t.last_scrape);
        w.key("last_duration_seconds").value(t.last_duration_seconds);
        w.key("last_error").value(t.last_error);
        w.key("samples").value(t.samples);
        w.key("counter_resets").value(t.counter_resets);
        w.endObject();
    }
    w.endArray();
    w.key("rollout");
    if (s.rollout) {
        w.raw(renderRolloutJson(*s.rollout, 20));
    } else {
        w.null();
    }
    w.key("hooks").beginArray();
    for (const auto& h : s.hooks) {
        w.beginObject();
        w.key("name").value(h.name);
        w.key("type").value(h.type);
        w.key("successes").value(h.ok);
        w.key("failures").value(h.failed);
        w.key("deferred").value(h.deferred);
        w.key("last_run");
        optionalTime(h.last_run);
        w.key("last_message").value(h.last_message);
        w.key("last_duration_seconds").value(h.last_duration_seconds);
        w.key("ready").value(h.ready);
        w.key("gating").value(h.gating);
        w.key("problems").beginArray();
        for (const auto& problem : h.problems) {
            w.value(problem);
        }
        w.endArray();
        if (h.type == std::string("webhook") || h.type == std::string("alertmanager")) {
            w.key("spool").beginObject();
            w.key("spooled").value(h.delivery.spooled);
            w.key("delivered").value(h.delivery.spool_delivered);
            w.key("dropped").value(h.delivery.spool_dropped);
            w.key("pending").value(h.delivery.spool_pending);
            w.key("write_failures").value(h.delivery.spool_write_failures);
            w.endObject();
        }
        w.endObject();
    }
    w.endArray();
    w.endObject();
    return w.str();
}

namespace {

std::vector<agent::RolloutHistoryEntry> lastEntries(const std::vector<agent::RolloutHistoryEntry>& history,
                                                   std::size_t n) {
    const std::size_t skip = history.size() > n ? history.size() - n : 0;
    return {history.begin() + static_cast<std::ptrdiff_t>(skip), history.end()};
}

}  // namespace

std::string renderRolloutJson(const agent::StatusSnapshot::Rollout& r, std::size_t max_history) {
    agent::JsonWriter w;
    w.beginObject();
    w.key("stages").beginArray();
    for (const int stage : r.stages) {
        w.value(stage);
    }
    w.endArray();
    w.key("stage").value(r.stage);
    w.key("percent").value(r.percent);
    w.key("phase").value(agent::toString(r.phase));
    w.key("paused").value(r.paused);
    w.key("entered_at").value(agent::formatRfc3339(r.entered_at));
    w.key("held_seconds").value(std::chrono::duration<double>(r.held).count());
    w.key("hold_seconds").value(std::chrono::duration<double>(r.hold).count());
    w.key("cooldown_until");
    if (r.cooldown_until) {
        w.value(agent::formatRfc3339(*r.cooldown_until));
    } else {
        w.null();
    }
    w.key("rollbacks").value(r.rollbacks);
    w.key("max_rollbacks").value(r.max_rollbacks);
    w.key("promotions").value(r.promotions);
    w.key("rollbacks_total").value(r.rollbacks_total);
    w.key("state_failures").value(r.state_failures);
    w.key("state_failing").value(r.state_failing);
    w.key("gate").beginArray();
    for (const auto& name : r.gate) {
        w.value(name);
    }
    w.endArray();
    w.key("history").beginArray();
    for (const auto& h : lastEntries(r.history, max_history)) {
        w.beginObject();
        w.key("at").value(agent::formatRfc3339(h.at));
        w.key("action").value(h.action);
        w.key("from_percent").value(h.from_percent);
        w.key("to_percent").value(h.to_percent);
        w.key("reason").value(h.reason);
        w.endObject();
    }
    w.endArray();
    w.endObject();
    return w.str();
}

std::string renderRolloutText(const agent::StatusSnapshot::Rollout& r, rules::TimePoint now,
                              std::size_t max_history) {
    std::string out;
    std::string stages;
    for (std::size_t i = 0; i < r.stages.size(); ++i) {
        stages += (i ? " -> " : "") + std::to_string(r.stages[i]) + "%";
    }
    out += "rollout: " + std::to_string(r.percent) + "% (" +
           (r.stage < 0 ? std::string("before the first stage")
                        : "stage " + std::to_string(r.stage + 1) + " of " + std::to_string(r.stages.size())) +
           "), " + agent::toString(r.phase) + (r.paused ? ", PAUSED" : "") + "\n";
    out += "  stages:    " + stages + "\n";
    out += "  entered:   " + agent::formatRfc3339(r.entered_at) + "\n";
    // Whole seconds for people: held rounded down, what is left rounded up.
    const auto held = std::chrono::floor<std::chrono::seconds>(r.held);
    out += "  held:      " + rules::formatDuration(held) + " of " + rules::formatDuration(r.hold);
    if (r.phase == agent::RolloutPhase::Holding && r.hold > r.held) {
        out += " (" + rules::formatDuration(std::chrono::ceil<std::chrono::seconds>(r.hold - r.held)) + " left" +
               (r.paused ? ", paused" : "") + ")";
    }
    out += "\n";
    out += "  cooldown:  ";
    if (r.cooldown_until && *r.cooldown_until > now) {
        out += "until " + agent::formatRfc3339(*r.cooldown_until) + " (" +
               rules::formatDuration(std::chrono::ceil<std::chrono::seconds>(*r.cooldown_until - now)) +
               " left)";
    } else {
        out += "none";
    }
    out += "\n";
    out += "  rollbacks: " + std::to_string(r.rollbacks) +
           (r.max_rollbacks > 0 ? " of at most " + std::to_string(r.max_rollbacks) : std::string()) +
           " in this attempt, " + std::to_string(r.rollbacks_total) + " in all; promotions " +
           std::to_string(r.promotions) + "\n";
    std::string gate;
    for (std::size_t i = 0; i < r.gate.size(); ++i) {
        gate += (i ? ", " : "") + r.gate[i];
    }
    out += "  gate:      " + (gate.empty() ? std::string("(no rules)") : gate) + "\n";
    const auto entries = lastEntries(r.history, max_history);
    if (!entries.empty()) {
        out += "  history (last " + std::to_string(entries.size()) + "):\n";
        for (const auto& h : entries) {
            char line[64];
            std::snprintf(line, sizeof(line), "%-9s %3d%% -> %3d%%", h.action.c_str(), h.from_percent, h.to_percent);
            out += "    " + agent::formatRfc3339(h.at) + "  " + line + (h.reason.empty() ? "" : "  " + h.reason) + "\n";
        }
    }
    return out;
}

}  // namespace rollguard::exporters
