#include "rollguard/exporters/http_server.h"

#include <civetweb.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "rollguard/agent/admin.h"
#include "rollguard/agent/json_writer.h"

namespace rollguard::exporters {

namespace {

const char* reasonPhrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 202:
            return "Accepted";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 409:
            return "Conflict";
        case 413:
            return "Payload Too Large";
        case 504:
            return "Gateway Timeout";
        default:
            return "Service Unavailable";
    }
}

void reply(mg_connection* conn, int status, const char* content_type, const std::string& body,
           const char* extra_headers = "") {
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
              "%sConnection: close\r\n\r\n",
              status, reasonPhrase(status), content_type, body.size(), extra_headers);
    mg_write(conn, body.data(), body.size());
}

bool healthy(const agent::StatusSnapshot& s) {
    const auto now = std::chrono::system_clock::now();
    const auto allowed = 3 * s.tick + std::chrono::seconds{1};
    const auto reference = s.last_tick ? *s.last_tick : s.started;
    return now - reference <= allowed;
}

/// Reads and drops a request body (Flagger posts a JSON payload to the gate), so the
/// client is not reset before it reads the answer. Stops after `limit` bytes.
void drainBody(mg_connection* conn, std::size_t limit) {
    char buf[4096];
    std::size_t total = 0;
    while (total < limit) {
        const int n = mg_read(conn, buf, sizeof(buf));
        if (n <= 0) {
            return;
        }
        total += static_cast<std::size_t>(n);
    }
}

/// Parses the gate's query string: `rules=a,b` (URL-encoded, spaces around names
/// ignored) and `always_200=true|1`. False when the query cannot be decoded.
bool parseGateQuery(const char* query_string, GateQuery& query) {
    if (query_string == nullptr) {
        return true;
    }
    const std::size_t len = std::strlen(query_string);
    std::string buf(len + 1, '\0');
    int n = mg_get_var(query_string, len, "rules", buf.data(), buf.size());
    if (n == -2) {
        return false;
    }
    if (n >= 0) {
        const std::string list(buf.data(), static_cast<std::size_t>(n));
        std::size_t start = 0;
        while (start <= list.size()) {
            std::size_t end = list.find(',', start);
            if (end == std::string::npos) {
                end = list.size();
            }
            std::string name = list.substr(start, end - start);
            name.erase(0, name.find_first_not_of(" \t"));
            name.erase(name.find_last_not_of(" \t") + 1);
            if (!name.empty()) {
                query.rules.push_back(name);
            }
            start = end + 1;
        }
    }
    n = mg_get_var(query_string, len, "always_200", buf.data(), buf.size());
    if (n >= 0) {
        const std::string v(buf.data(), static_cast<std::size_t>(n));
        query.always_200 = v == "true" || v == "1";
    }
    return true;
}

/// `format=text` in the query string.
bool wantsText(const char* query_string) {
    if (query_string == nullptr) {
        return false;
    }
    const std::size_t len = std::strlen(query_string);
    char buf[16] = {};
    const int n = mg_get_var(query_string, len, "format", buf, sizeof(buf));
    return n >= 0 && std::string_view(buf, static_cast<std::size_t>(n)) == "text";
}

}  // namespace

std::string jsonError(const std::string& message) {
    std::string out = "{\"error\":";
    agent::appendJsonString(out, message);
    return out + "}\n";
}

struct HttpServer::Impl {
    SnapshotFn snapshot;
    AdminApi admin;

    /// POST /api/v1/rollback, /api/v1/rearm and /api/v1/reload.
    int handleAdmin(mg_connection* conn, const std::string& uri) {
        const std::function<AdminApi::Reply(const std::string&)>* action = nullptr;
        std::string rollout_command;
        static constexpr std::string_view kRolloutPrefix = "/api/v1/rollout/";
        if (uri.rfind(kRolloutPrefix, 0) == 0) {
            rollout_command = uri.substr(kRolloutPrefix.size());
            if (rollout_command != "pause" && rollout_command != "resume" && rollout_command != "promote" &&
                rollout_command != "abort") {
                reply(conn, 404, "application/json",
                      jsonError("no such rollout command; try pause, resume, promote or abort"));
                return 404;
            }
        } else if (uri == "/api/v1/rollback") {
            action = &admin.rollback;
        } else if (uri == "/api/v1/rearm") {
            action = &admin.rearm;
        } else if (uri == "/api/v1/reload") {
            action = &admin.reload;
        } else {
            reply(conn, 404, "application/json",
                  jsonError("no such admin endpoint; try /api/v1/rollback, /api/v1/rearm or /api/v1/reload"));
            return 404;
        }
        if (admin.token.empty()) {
            reply(conn, 403, "application/json",
                  jsonError("the admin API is disabled: set agent.admin_token_file to enable it"));
            return 403;
        }
        const char* authorization = mg_get_header(conn, "Authorization");
        if (authorization == nullptr || !agent::bearerMatches(authorization, admin.token)) {
            reply(conn, 401, "application/json", jsonError("missing or wrong bearer token"),
                  "WWW-Authenticate: Bearer realm=\"rollguard\"\r\n");
            return 401;
        }
        constexpr std::size_t kMaxBody = 64 * 1024;
        std::string body;
        char buf[4096];
        for (;;) {
            const int n = mg_read(conn, buf, sizeof(buf));
            if (n <= 0) {
                break;
            }
            body.append(buf, static_cast<std::size_t>(n));
            if (body.size() > kMaxBody) {
                reply(conn, 413, "application/json", jsonError("request body over 64 KiB"));
                return 413;
            }
        }
        if (!rollout_command.empty()) {
            if (!admin.rollout) {
                reply(conn, 404, "application/json", jsonError("not available"));
                return 404;
            }
            const AdminApi::Reply r = admin.rollout(rollout_command, body);
            reply(conn, r.status, "application/json", r.json);
            return r.status;
        }
        if (!*action) {
            reply(conn, 404, "application/json", jsonError("not available"));
            return 404;
        }
        const AdminApi::Reply r = (*action)(body);
        reply(conn, r.status, "application/json", r.json);
        return r.status;
    }
    mg_context* ctx = nullptr;
    std::uint16_t port = 0;

    static int handle(mg_connection* conn, void* cbdata) {
        auto* self = static_cast<Impl*>(cbdata);
        const mg_request_info* info = mg_get_request_info(conn);
        const std::string uri = info->local_uri ? info->local_uri : "";
        const bool is_get = std::strcmp(info->request_method, "GET") == 0 ||
                            std::strcmp(info->request_method, "HEAD") == 0;
        const bool is_post = std::strcmp(info->request_method, "POST") == 0;
        if (uri == "/api/v1/gate" && (is_get || is_post)) {
            try {
                if (is_post) {
                    drainBody(conn, 64 * 1024);
                }
                GateQuery query;
                if (!parseGateQuery(info->query_string, query)) {
                    reply(conn, 400, "application/json", jsonError("cannot decode the query string"));
                    return 400;
                }
                const GateReply r = renderGate(self->snapshot(), query);
                reply(conn, r.status, "application/json", r.json);
                return r.status;
            } catch (const std::exception& e) {
                spdlog::error("http: {} failed: {}", uri, e.what());
                reply(conn, 503, "application/json", jsonError("internal error"));
                return 503;
            }
        }
        if (is_post && uri.rfind("/api/v1/", 0) == 0) {
            try {
                return self->handleAdmin(conn, uri);
            } catch (const std::exception& e) {
                spdlog::error("http: {} failed: {}", uri, e.what());
                reply(conn, 503, "application/json", jsonError("internal error"));
                return 503;
            }
        }
        if (!is_get) {
            reply(conn, 405, "text/plain; charset=utf-8", "only GET is supported here\n");
            return 405;
        }
        try {
            if (uri == "/metrics") {
                reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", renderMetrics(self->snapshot()));
                return 200;
            }
            if (uri == "/healthz") {
                const bool ok = healthy(self->snapshot());
                reply(conn, ok ? 200 : 503, "text/plain; charset=utf-8", ok ? "ok\n" : "evaluation loop stalled\n");
                return ok ? 200 : 503;
            }
            if (uri == "/readyz") {
                const auto reasons = notReadyReasons(self->snapshot());
                std::string body = reasons.empty() ? "ready\n" : "";
                for (const auto& reason : reasons) {
                    body += "not ready: " + reason + "\n";
                }
                const int status = reasons.empty() ? 200 : 503;
                reply(conn, status, "text/plain; charset=utf-8", body);
                return status;
            }
            if (uri == "/api/v1/status") {
                reply(conn, 200, "application/json", renderStatusJson(self->snapshot()) + "\n");
                return 200;
            }
            if (uri == "/api/v1/rollout") {
                const auto snapshot = self->snapshot();
                if (!snapshot.rollout) {
                    reply(conn, 404, "application/json",
                          jsonError("no progressive rollout: the configuration has no [rollout] section"));
                    return 404;
                }
                if (wantsText(info->query_string)) {
                    reply(conn, 200, "text/plain; charset=utf-8",
                          renderRolloutText(*snapshot.rollout, std::chrono::system_clock::now(), 10));
                    return 200;
                }
                reply(conn, 200, "application/json", renderRolloutJson(*snapshot.rollout, SIZE_MAX) + "\n");
                return 200;
            }
        } catch (const std::exception& e) {
            spdlog::error("http: {} failed: {}", uri, e.what());
            reply(conn, 503, "text/plain; charset=utf-8", "internal error\n");
            return 503;
        }
        reply(conn, 404, "text/plain; charset=utf-8", "not found; try /metrics, /healthz, /readyz, /api/v1/status, /api/v1/gate or /api/v1/rollout\n");
        return 404;
    }
};

HttpServer::HttpServer(const std::string& listen, SnapshotFn snapshot, AdminApi admin)
    : impl_(std::make_unique<Impl>()) {
    impl_->snapshot = std::move(snapshot);
    impl_->admin = std::move(admin);
    static std::once_flag init;
    std::call_once(init, [] { mg_init_library(0); });

    const char* options[] = {"listening_ports", listen.c_str(), "num_threads", "2", "enable_keep_alive", "no",
                             nullptr};
    mg_callbacks callbacks{};
    mg_init_data init_data{};
    init_data.callbacks = &callbacks;
    init_data.user_data = impl_.get();
    init_data.configuration_options = options;
    char error_text[256] = {};
    mg_error_data error{};
    error.text = error_text;
    error.text_buffer_size = sizeof(error_text);
    impl_->ctx = mg_start2(&init_data, &error);
    if (impl_->ctx == nullptr) {
        throw std::runtime_error("cannot listen on " + listen + ": " +
                                 (error_text[0] ? std::string(error_text) : std::string("unknown error")));
    }
    mg_set_request_handler(impl_->ctx, "/", &Impl::handle, impl_.get());
    mg_server_port ports[4] = {};
    const int n = mg_get_server_ports(impl_->ctx, 4, ports);
    if (n > 0) {
        impl_->port = static_cast<std::uint16_t>(ports[0].port);
    }
}

HttpServer::~HttpServer() {
    if (impl_ && impl_->ctx) {
        mg_stop(impl_->ctx);
    }
}

std::uint16_t HttpServer::port() const {
    return impl_->port;
}

}  // namespace rollguard::exporters
