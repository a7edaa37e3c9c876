#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rollguard/agent/admin.h"
#include "rollguard/agent/daemon.h"

namespace rollguard::exporters {

/// Renders a snapshot as Prometheus text exposition format 0.0.4 (via prometheus-cpp's
/// serializer). Names follow Prometheus conventions: base units, `_total` counters.
std::string renderMetrics(const agent::StatusSnapshot& snapshot);

/// Renders a snapshot as the JSON of GET /api/v1/status.
std::string renderStatusJson(const agent::StatusSnapshot& snapshot);

/// The rollout as the JSON object of GET /api/v1/rollout (and "rollout" in
/// /api/v1/status): {"stages", "stage", "percent", "phase", "paused", "entered_at",
/// "held_seconds", "hold_seconds", "cooldown_until" (null when none), "rollbacks",
/// "max_rollbacks", "promotions", "rollbacks_total", "gate": [names], "history":
/// [{"at", "action", "from_percent", "to_percent", "reason"}]} with the last
/// `max_history` history entries (newest last). Times RFC 3339 UTC. Pure.
std::string renderRolloutJson(const agent::StatusSnapshot::Rollout& rollout, std::size_t max_history);

/// The rollout for people (`rollguard rollout status`): stage and percentage, phase,
/// held/hold, cooldown, rollbacks, the gate and the last `max_history` history entries,
/// one per line. `now` is used for "time left" figures. Pure.
std::string renderRolloutText(const agent::StatusSnapshot::Rollout& rollout, rules::TimePoint now,
                              std::size_t max_history);

/// Why the agent is not ready, one sentence each, in order: "the rules have not been
/// evaluated yet" (`snapshot.ticks == 0`), "the hooks' preflight has not finished yet"
/// (`!snapshot.preflight_checked` with a gating hook), then for every gating hook (Hook::gating)
/// whose last preflight failed, "hook NAME cannot work: PROBLEM" per problem. Empty:
/// ready. Pure; thread-safe.
std::vector<std::string> notReadyReasons(const agent::StatusSnapshot& snapshot);

/// Whether the agent is ready to answer for its rules and to roll back: its config is
/// loaded (a snapshot exists at all), its sources are started, it has evaluated the rules
/// at least once, and every gating hook passed its last preflight (notReadyReasons is
/// empty). Pure; thread-safe.
bool isReady(const agent::StatusSnapshot& snapshot);

/// The answer of GET /api/v1/gate: an HTTP status and a JSON body.
struct GateReply {
    int status = 200;
    std::string json;
};

/// What GET /api/v1/gate asks for (from its query string).
struct GateQuery {
    /// Empty: the gate covers every critical rule. Otherwise exactly the rules named here,
    /// whatever their severity (all groups of a grouped rule).
    std::vector<std::string> rules;
    /// Answer 200 even when the gate is shut, the verdict only in the body's `healthy`:
    /// for Argo Rollouts' `web` metric, which reads a non-2xx answer as a measurement
    /// error rather than a failure.
    bool always_200 = false;
};

/// The deploy gate. Healthy when the agent is ready (isReady, so a gating hook that
/// fails its preflight shuts the gate as it fails /readyz) and no covered rule is
/// pending or firing; then 200 with {"healthy": true, ...}. `not_ready` lists
/// notReadyReasons (empty when ready) and `reason` starts with the first of them. Otherwise 503 (or 200 with
/// `always_200`) with {"healthy": false, "blocking": [{"rule", "group", "severity",
/// "state", "value", "threshold", "comparison", "since"}], "reason": ...}. A rule with no
/// data (fewer than min_samples) is inactive, so it does not shut the gate. A rule name
/// in the query that the config does not define answers 400, so a typo cannot pass a
/// rollout. `dry_run` does not open the gate: it silences rollguard's own hooks only.
/// `evaluated_at` is the last evaluation (RFC 3339) or null. Pure; thread-safe.
GateReply renderGate(const agent::StatusSnapshot& snapshot, const GateQuery& query = {});

/// The admin endpoints' actions. Each gets the request body and returns the HTTP status
/// and a JSON body.
struct AdminApi {
    struct Reply {
        int status = 200;
        std::string json;
    };
    /// The bearer token the admin endpoints want on a TCP listener (null or empty: off
    /// there). A Unix-socket listener needs none.
    std::shared_ptr<const agent::AdminToken> token;
    std::function<Reply(const std::string& body)> rollback;
    std::function<Reply(const std::string& body)> rearm;
    std::function<Reply(const std::string& body)> reload;  ///< POST /api/v1/reload
    /// POST /api/v1/rollout/<command> (pause, resume, promote, abort): the command's name
    /// and the request body.
    std::function<Reply(const std::string& command, const std::string& body)> rollout;
};

/// rollguard's HTTP listener (libmicrohttpd, one epoll event loop: idle and slow clients
/// hold a descriptor, never a thread; at most 4096 connections, 64 per client address,
/// closed after 10 s without a byte; admin actions run on their own threads): GET /metrics, /healthz, /readyz (200 "ready"
/// once isReady, else 503 with one "not ready: REASON" line per notReadyReasons), /api/v1/status, GET /api/v1/rollout (renderRolloutJson
/// with the whole history, or renderRolloutText with `?format=text`; 404 without
/// [rollout]), GET or POST /api/v1/gate (renderGate;
/// query `rules=a,b` and `always_200=true`; POST because Flagger's webhooks post and
/// its body is ignored), and the
/// admin API: POST /api/v1/rollback, /api/v1/rearm, /api/v1/reload and
/// /api/v1/rollout/{pause,resume,promote,abort}.
///
/// Two kinds of listener serve the same endpoints:
/// - TCP (`listen` = "host:port"): the admin API needs `Authorization: Bearer <token>`
///   (401 otherwise, compared in constant time) and answers 403 when no token is set.
/// - Unix socket (`listen` = "unix:/path"): created mode 0600 (a socket file left at the
///   path is replaced, so the caller must make sure no other process serves it: rollguard
///   holds the state_dir lock); every request's peer credentials (SO_PEERCRED) are
///   checked, and only the agent's own user and root are answered (403 otherwise); the
///   admin API needs no token there. The file is removed when the server stops.
/// Admin bodies are capped at 64 KiB (413).
/// It never includes libmicrohttpd in this header. Binds loopback unless told otherwise.
/// /healthz answers 200 while the evaluation loop has ticked within 3 ticks (or has not
/// started yet for less than 3 ticks), 503 otherwise.
/// Thread-safety: the snapshot function is called from the event loop's thread and
/// must be thread-safe (Daemon::snapshot is).
class HttpServer {
public:
    using SnapshotFn = std::function<agent::StatusSnapshot()>;

    /// `listen` is "host:port" (port 0 = any free port) or "unix:/path". Throws
    /// std::runtime_error when the address cannot be bound, with the reason.
    HttpServer(const std::string& listen, SnapshotFn snapshot, AdminApi admin = {});
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// The bound port (useful with port 0); 0 on a Unix socket.
    std::uint16_t port() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard::exporters
