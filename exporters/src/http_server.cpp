#include "rollguard/exporters/http_server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <optional>
#include <algorithm>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "rollguard/agent/admin.h"
#include "rollguard/agent/json_writer.h"

namespace rollguard::exporters {

namespace {

bool healthy(const agent::StatusSnapshot& s) {
    const auto now = std::chrono::system_clock::now();
    const auto allowed = 3 * s.tick + std::chrono::seconds{1};
    const auto reference = s.last_tick ? *s.last_tick : s.started;
    return now - reference <= allowed;
}

/// The rules=a,b list of the gate's query (spaces around names ignored).
void parseRuleList(const std::string& list, GateQuery& query) {
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

/// A query argument (MHD has URL-decoded it), or nullopt.
std::optional<std::string> queryArg(MHD_Connection* conn, const char* name) {
    const char* v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    if (v == nullptr) {
        return std::nullopt;
    }
    return std::string(v);
}

/// Raises the soft limit of open files to the hard one (at most 65536): every idle client
/// holds a descriptor, and the server's caps (kMaxConnections) must be what limits them,
/// not a default soft limit of 1024 that would also starve the hooks and the tailers.
void raiseFileLimit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        return;
    }
    const rlim_t want = lim.rlim_max == RLIM_INFINITY ? 65536 : std::min<rlim_t>(lim.rlim_max, 65536);
    if (lim.rlim_cur < want) {
        lim.rlim_cur = want;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
}

/// Why a peer on the Unix socket is not answered, or nullopt. The kernel says who is
/// calling (SO_PEERCRED): the agent's own user and root may talk to it, nobody else. The
/// socket's mode 0600 and the state_dir's 0700 keep others out already; this still holds
/// when someone loosens either by hand.
std::optional<std::string> peerRefusal(MHD_Connection* conn) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    ucred peer{};
    socklen_t size = sizeof peer;
    if (info == nullptr || ::getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) {
        return "cannot tell who is calling (SO_PEERCRED)";
    }
    if (peer.uid == ::geteuid() || peer.uid == 0) {
        return std::nullopt;
    }
    return "uid " + std::to_string(peer.uid) + " may not use this socket: only the agent's user (uid " +
           std::to_string(::geteuid()) + ") and root may";
}

/// A listening Unix stream socket at `path`, mode 0600. A socket file already there is a
/// leftover of an agent that died (the caller holds the state_dir lock) and is replaced;
/// anything else at the path is refused rather than deleted.
int listenOnUnixSocket(const std::string& path, ino_t& inode) {
    sockaddr_un address{};
    if (path.size() >= sizeof(address.sun_path)) {
        throw std::runtime_error("cannot listen on unix:" + path + ": the path is " + std::to_string(path.size()) +
                                 " bytes, a Unix socket's at most " + std::to_string(sizeof(address.sun_path) - 1) +
                                 "; choose a shorter state_dir");
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            throw std::runtime_error("cannot listen on unix:" + path + ": something that is not a socket is there; "
                                     "remove it");
        }
        ::unlink(path.c_str());
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error("cannot create a Unix socket: " + std::string(std::strerror(errno)));
    }
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    // Until listen() nobody can connect, so the mode is set before anyone could.
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::chmod(path.c_str(), 0600) != 0 || ::lstat(path.c_str(), &st) != 0 || ::listen(fd, 128) != 0) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error("cannot listen on unix:" + path + ": " + std::strerror(err));
    }
    inode = st.st_ino;
    return fd;
}

}  // namespace

std::string jsonError(const std::string& message) {
    std::string out = "{\"error\":";
    agent::appendJsonString(out, message);
    return out + "}\n";
}

/// One request as the access handler collects it: its body (POST), then the reply,
/// computed on a worker thread for admin actions (which may take a while: a reload) while
/// the connection is suspended, so the event loop keeps serving the probes.
struct RequestState {
    std::string body;
    bool too_large = false;
    bool peer_checked = false;  // Unix socket: the peer's credentials were looked at
    std::string refusal;        // ... and why it is not answered ("" when it is)
    bool started = false;  // the admin action was handed to its thread
    bool done = false;
    int status = 200;
    std::string content_type;
    std::string reply;
    std::string extra_header_name;
    std::string extra_header_value;
};

struct HttpServer::Impl {
    SnapshotFn snapshot;
    AdminApi admin;
    MHD_Daemon* daemon = nullptr;
    std::uint16_t port = 0;
    std::string unix_path;  // a Unix-socket listener's path, removed at the end
    ino_t unix_inode = 0;   // ... only if it is still the socket this server made
    /// Admin actions in flight (detached threads): the destructor waits for none left.
    /// Shared with the threads, so the last one may finish after the server is gone.
    struct InFlight {
        std::mutex mutex;
        std::condition_variable cv;
        int count = 0;
    };
    std::shared_ptr<InFlight> in_flight = std::make_shared<InFlight>();

    static MHD_Result send(MHD_Connection* conn, int status, const std::string& content_type,
                           const std::string& body, const std::string& header_name = {},
                           const std::string& header_value = {}) {
        MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                          MHD_RESPMEM_MUST_COPY);
        if (r == nullptr) {
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", content_type.c_str());
        MHD_add_response_header(r, "Cache-Control", "no-store");
        if (!header_name.empty()) {
            MHD_add_response_header(r, header_name.c_str(), header_value.c_str());
        }
        const MHD_Result ret = MHD_queue_response(conn, static_cast<unsigned int>(status), r);
        MHD_destroy_response(r);
        return ret;
    }

    /// The admin reply (POST /api/v1/rollback, rearm, reload, rollout/<command>) for a
    /// complete request; runs on its own thread.
    AdminApi::Reply adminReply(const std::string& uri, const std::string& authorization, const std::string& body,
                               std::string& www_authenticate) {
        const std::function<AdminApi::Reply(const std::string&)>* action = nullptr;
        std::string rollout_command;
        static constexpr std::string_view kRolloutPrefix = "/api/v1/rollout/";
        if (uri.rfind(kRolloutPrefix, 0) == 0) {
            rollout_command = uri.substr(kRolloutPrefix.size());
            if (rollout_command != "pause" && rollout_command != "resume" && rollout_command != "promote" &&
                rollout_command != "abort") {
                return {404, jsonError("no such rollout command; try pause, resume, promote or abort")};
            }
        } else if (uri == "/api/v1/rollback") {
            action = &admin.rollback;
        } else if (uri == "/api/v1/rearm") {
            action = &admin.rearm;
        } else if (uri == "/api/v1/reload") {
            action = &admin.reload;
        } else {
            return {404, jsonError("no such admin endpoint; try /api/v1/rollback, /api/v1/rearm or /api/v1/reload")};
        }
        if (unix_path.empty()) {
            if (!admin.token || !admin.token->enabled()) {
                return {403, jsonError("the admin API over TCP is off: set agent.admin_token_file to turn it on, or "
                                       "use the rollguard command on this host (it talks to the agent's socket in "
                                       "state_dir)")};
            }
            if (!admin.token->matches(authorization)) {
                www_authenticate = "Bearer realm=\"rollguard\"";
                return {401, jsonError("missing or wrong bearer token")};
            }
        }
        if (!rollout_command.empty()) {
            if (!admin.rollout) {
                return {404, jsonError("not available")};
            }
            return admin.rollout(rollout_command, body);
        }
        if (!*action) {
            return {404, jsonError("not available")};
        }
        return (*action)(body);
    }

    /// GET/HEAD answers, computed in the event loop: each is a render of the snapshot.
    MHD_Result answerGet(MHD_Connection* conn, const std::string& uri) {
        if (uri == "/metrics") {
            return send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", renderMetrics(snapshot()));
        }
        if (uri == "/healthz") {
            const bool ok = healthy(snapshot());
            return send(conn, ok ? 200 : 503, "text/plain; charset=utf-8", ok ? "ok\n" : "evaluation loop stalled\n");
        }
        if (uri == "/readyz") {
            const auto reasons = notReadyReasons(snapshot());
            std::string body = reasons.empty() ? "ready\n" : "";
            for (const auto& reason : reasons) {
                body += "not ready: " + reason + "\n";
            }
            return send(conn, reasons.empty() ? 200 : 503, "text/plain; charset=utf-8", body);
        }
        if (uri == "/api/v1/status") {
            return send(conn, 200, "application/json", renderStatusJson(snapshot()) + "\n");
        }
        if (uri == "/api/v1/rollout") {
            const auto s = snapshot();
            if (!s.rollout) {
                return send(conn, 404, "application/json",
                            jsonError("no progressive rollout: the configuration has no [rollout] section"));
            }
            if (queryArg(conn, "format").value_or("") == "text") {
                return send(conn, 200, "text/plain; charset=utf-8",
                            renderRolloutText(*s.rollout, std::chrono::system_clock::now(), 10));
            }
            return send(conn, 200, "application/json", renderRolloutJson(*s.rollout, SIZE_MAX) + "\n");
        }
        return send(conn, 404, "text/plain; charset=utf-8",
                    "not found; try /metrics, /healthz, /readyz, /api/v1/status, /api/v1/gate or /api/v1/rollout\n");
    }

    MHD_Result gate(MHD_Connection* conn) {
        GateQuery query;
        if (auto rules = queryArg(conn, "rules")) {
            parseRuleList(*rules, query);
        }
        if (auto v = queryArg(conn, "always_200")) {
            query.always_200 = *v == "true" || *v == "1";
        }
        const GateReply r = renderGate(snapshot(), query);
        return send(conn, r.status, "application/json", r.json);
    }

    static MHD_Result access(void* cls, MHD_Connection* conn, const char* url, const char* method,
                             const char* /*version*/, const char* upload_data, size_t* upload_data_size,
                             void** con_cls) {
        auto* self = static_cast<Impl*>(cls);
        const std::string uri = url != nullptr ? url : "";
        const std::string_view m = method != nullptr ? method : "";
        const bool is_get = m == "GET" || m == "HEAD";
        const bool is_post = m == "POST";
        auto* state = static_cast<RequestState*>(*con_cls);
        if (state == nullptr) {
            // First call: headers only. Bodies are read in later calls.
            state = new RequestState();
            *con_cls = state;
            if (is_post) {
                return MHD_YES;
            }
        }
        try {
            if (!self->unix_path.empty() && !state->peer_checked) {
                state->peer_checked = true;
                state->refusal = peerRefusal(conn).value_or("");
            }
            if (is_post && *upload_data_size > 0) {
                constexpr std::size_t kMaxBody = 64 * 1024;
                if (!state->refusal.empty()) {
                    // read and dropped: the answer is 403 whatever the body says
                } else if (state->body.size() + *upload_data_size > kMaxBody) {
                    state->too_large = true;
                } else {
                    state->body.append(upload_data, *upload_data_size);
                }
                *upload_data_size = 0;
                return MHD_YES;
            }
            if (!state->refusal.empty()) {
                return send(conn, 403, "application/json", jsonError(state->refusal));
            }
            if (uri == "/api/v1/gate" && (is_get || is_post)) {
                return self->gate(conn);  // a POST's body (Flagger's payload) is read and ignored
            }
            if (is_post && uri.rfind("/api/v1/", 0) == 0) {
                if (state->too_large) {
                    return send(conn, 413, "application/json", jsonError("request body over 64 KiB"));
                }
                if (state->done) {
                    return send(conn, state->status, state->content_type, state->reply, state->extra_header_name,
                                state->extra_header_value);
                }
                if (!state->started) {
                    state->started = true;
                    const char* auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
                    std::string authorization = auth != nullptr ? auth : "";
                    MHD_suspend_connection(conn);
                    auto in_flight = self->in_flight;
                    {
                        std::lock_guard lock(in_flight->mutex);
                        ++in_flight->count;
                    }
                    std::thread([self, conn, state, uri, authorization, in_flight] {
                        std::string www;
                        AdminApi::Reply r;
                        try {
                            r = self->adminReply(uri, authorization, state->body, www);
                        } catch (const std::exception& e) {
                            spdlog::error("http: {} failed: {}", uri, e.what());
                            r = {503, jsonError("internal error")};
                        }
                        state->status = r.status;
                        state->content_type = "application/json";
                        state->reply = r.json;
                        if (!www.empty()) {
                            state->extra_header_name = "WWW-Authenticate";
                            state->extra_header_value = www;
                        }
                        state->done = true;
                        MHD_resume_connection(conn);
                        std::lock_guard lock(in_flight->mutex);
                        --in_flight->count;
                        in_flight->cv.notify_all();
                    }).detach();
                }
                return MHD_YES;
            }
            if (!is_get) {
                return send(conn, 405, "text/plain; charset=utf-8", "only GET is supported here\n");
            }
            return self->answerGet(conn, uri);
        } catch (const std::exception& e) {
            spdlog::error("http: {} failed: {}", uri, e.what());
            return send(conn, 503, "text/plain; charset=utf-8", "internal error\n");
        }
    }

    static void completed(void* /*cls*/, MHD_Connection* /*conn*/, void** con_cls, MHD_RequestTerminationCode) {
        delete static_cast<RequestState*>(*con_cls);
        *con_cls = nullptr;
    }

    static std::array<MHD_OptionItem, 6> commonOptions();

    [[gnu::format(printf, 2, 0)]] static void log(void* /*cls*/, const char* fmt, va_list ap) {
        char buf[512];
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        std::string line(buf);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
            line.pop_back();
        }
        spdlog::debug("http: {}", line);
    }
};

namespace {

// Decisions (docs/config.md "HTTP listener"): one event loop (epoll) serves every
// connection, so idle or slow clients hold a descriptor, never a thread; admin actions
// run on their own threads with the connection suspended. Caps: kMaxConnections in
// all, kMaxConnectionsPerIp per client address, kIdleTimeout without a byte from the
// client closes it (a request that dribbles in keeps only its own connection), 32 KiB
// of memory for the request line and headers per connection, 64 KiB of body for the
// admin endpoints.
constexpr unsigned int kMaxConnections = 4096;
constexpr unsigned int kMaxConnectionsPerIp = 64;
constexpr unsigned int kIdleTimeoutSeconds = 10;
constexpr std::size_t kConnectionMemory = 32 * 1024;
constexpr unsigned int kFlags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

}  // namespace

/// The options every listener gets (the caps above, the request's end, the log), for
/// MHD_OPTION_ARRAY; where it listens is given beside them.
std::array<MHD_OptionItem, 6> HttpServer::Impl::commonOptions() {
    return {{
        {MHD_OPTION_CONNECTION_LIMIT, kMaxConnections, nullptr},
        {MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds, nullptr},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<intptr_t>(kConnectionMemory), nullptr},
        {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&Impl::completed), nullptr},
        {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(&Impl::log), nullptr},
        {MHD_OPTION_END, 0, nullptr},
    }};
}

HttpServer::HttpServer(const std::string& listen, SnapshotFn snapshot, AdminApi admin)
    : impl_(std::make_unique<Impl>()) {
    impl_->snapshot = std::move(snapshot);
    impl_->admin = std::move(admin);
    raiseFileLimit();

    if (listen.rfind("unix:", 0) == 0) {
        // The local admin socket: no client addresses, so no per-address cap.
        impl_->unix_path = listen.substr(5);
        const int fd = listenOnUnixSocket(impl_->unix_path, impl_->unix_inode);
        auto options = Impl::commonOptions();
        impl_->daemon = MHD_start_daemon(kFlags, 0, nullptr, nullptr, &Impl::access, impl_.get(),
                                         MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_ARRAY, options.data(), MHD_OPTION_END);
        if (impl_->daemon == nullptr) {
            const int err = errno;
            ::close(fd);
            ::unlink(impl_->unix_path.c_str());
            throw std::runtime_error("cannot serve " + listen + ": " + std::strerror(err));
        }
        return;
    }

    // "host:port", "[v6]:port" or ":port" (every address).
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) {
        throw std::runtime_error("cannot listen on " + listen + ": want host:port");
    }
    std::string host = listen.substr(0, colon);
    const std::string port_text = listen.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &found);
    if (rc != 0 || found == nullptr) {
        throw std::runtime_error("cannot listen on " + listen + ": " + ::gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
    sockaddr_storage address{};
    std::memcpy(&address, found->ai_addr, found->ai_addrlen);
    auto options = Impl::commonOptions();
    impl_->daemon = MHD_start_daemon(
        kFlags | (found->ai_family == AF_INET6 ? static_cast<unsigned int>(MHD_USE_IPv6) : 0u), 0, nullptr, nullptr,
        &Impl::access, impl_.get(), MHD_OPTION_SOCK_ADDR, &address, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        kMaxConnectionsPerIp, MHD_OPTION_ARRAY, options.data(), MHD_OPTION_END);
    if (impl_->daemon == nullptr) {
        throw std::runtime_error("cannot listen on " + listen + ": " + std::strerror(errno));
    }
    const MHD_DaemonInfo* info = MHD_get_daemon_info(impl_->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info != nullptr) {
        impl_->port = info->port;
    }
}

HttpServer::~HttpServer() {
    if (!impl_) {
        return;
    }
    {
        // Admin actions finish first: a suspended connection must be resumed before the
        // daemon stops.
        std::unique_lock lock(impl_->in_flight->mutex);
        impl_->in_flight->cv.wait(lock, [&] { return impl_->in_flight->count == 0; });
    }
    if (impl_->daemon != nullptr) {
        MHD_stop_daemon(impl_->daemon);  // closes the listening socket too
    }
    struct stat st {};
    if (!impl_->unix_path.empty() && ::lstat(impl_->unix_path.c_str(), &st) == 0 && st.st_ino == impl_->unix_inode) {
        ::unlink(impl_->unix_path.c_str());
    }
}

std::uint16_t HttpServer::port() const {
    return impl_->port;
}

}  // namespace rollguard::exporters
