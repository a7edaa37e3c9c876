#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "rollguard/agent/daemon.h"

namespace rollguard::exporters {

/// Renders a snapshot as Prometheus text exposition format 0.0.4 (via prometheus-cpp's
/// serializer). Names follow Prometheus conventions: base units, `_total` counters.
std::string renderMetrics(const agent::StatusSnapshot& snapshot);

/// Renders a snapshot as the JSON of GET /api/v1/status.
std::string renderStatusJson(const agent::StatusSnapshot& snapshot);

/// The admin endpoints' actions. Each gets the request body and returns the HTTP status
/// and a JSON body. An empty token disables the admin API.
struct AdminApi {
    struct Reply {
        int status = 200;
        std::string json;
    };
    std::string token;
    std::function<Reply(const std::string& body)> rollback;
    std::function<Reply(const std::string& body)> rearm;
};

/// rollguard's HTTP listener (civetweb): GET /metrics, /healthz, /api/v1/status, and the
/// admin API: POST /api/v1/rollback and /api/v1/rearm, which need
/// `Authorization: Bearer <token>` (401 otherwise, compared in constant time) and answer
/// 403 when no token is configured. Admin bodies are capped at 64 KiB (413).
/// It never includes civetweb in this header. Binds loopback unless told otherwise.
/// /healthz answers 200 while the evaluation loop has ticked within 3 ticks (or has not
/// started yet for less than 3 ticks), 503 otherwise.
/// Thread-safety: the snapshot function is called from civetweb's worker threads and
/// must be thread-safe (Daemon::snapshot is).
class HttpServer {
public:
    using SnapshotFn = std::function<agent::StatusSnapshot()>;

    /// `listen` is "host:port" (port 0 = any free port). Throws std::runtime_error when
    /// the address cannot be bound, with civetweb's reason.
    HttpServer(const std::string& listen, SnapshotFn snapshot, AdminApi admin = {});
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// The bound port (useful with port 0).
    std::uint16_t port() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard::exporters
