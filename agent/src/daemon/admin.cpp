// The state-directory lock, the admin API's request and token, its Unix socket's path, and the
// CLI's client.
#include "rollguard/agent/admin.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>
#include <string>
#include <utility>

#include <curl/curl.h>
#include <simdjson.h>

#include "hooks/hooks_internal.h"
#include "rollguard/rules/engine.h"
#include "util/atomic_file.h"
#include "util/secret.h"

namespace rollguard::agent {

StateDirLock::Outcome StateDirLock::tryAcquire(const std::string& state_dir, std::optional<StateDirLock>& lock,
                                               std::string& detail) {
    std::error_code ec;
    if (!std::filesystem::exists(state_dir, ec) && std::filesystem::create_directories(state_dir, ec)) {
        std::filesystem::permissions(state_dir, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::replace, ec);
    }
    const std::string path = state_dir + "/lock";
    const int wfd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (wfd < 0) {
        detail = "cannot open " + path + ": " + errnoText(errno);
        return Outcome::Failed;
    }
    // The lock is held on a read-only descriptor and the writable one is closed once the
    // pid is written: a daemon keeps no file open for writing in state_dir, so the
    // filesystem can still be remounted read-only under it (the daemon goes on, see
    // "A full or read-only state_dir" in README.md).
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        detail = "cannot open " + path + ": " + errnoText(errno);
        ::close(wfd);
        return Outcome::Failed;
    }
    const detail::UniqueFd close_wfd(wfd);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        if (err == EWOULDBLOCK) {
            char buf[32] = {};
            const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
            const std::string pid = n > 0 ? detail::trimText(std::string_view(buf, static_cast<std::size_t>(n))) : "";
            detail = pid.empty() ? std::string("another process") : "pid " + pid;
            ::close(fd);
            return Outcome::HeldByOther;
        }
        detail = "cannot lock " + path + ": " + errnoText(err);
        ::close(fd);
        return Outcome::Failed;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(wfd, 0) != 0 || ::pwrite(wfd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        // The lock itself holds; only the informative pid is missing.
    }
    lock.emplace(StateDirLock(fd));
    return Outcome::Acquired;
}

StateDirLock::StateDirLock(StateDirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

StateDirLock::~StateDirLock() {
    if (fd_ >= 0) {
        ::close(fd_);  // releases the flock
    }
}

std::optional<AdminRequest> parseAdminRequest(std::string_view body, std::string& error) {
    AdminRequest request;
    if (detail::trimText(body).empty()) {
        return request;
    }
    simdjson::ondemand::parser parser;
    const simdjson::padded_string padded(body);
    simdjson::ondemand::document doc;
    simdjson::ondemand::object object;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS || doc.get_object().get(object) != simdjson::SUCCESS) {
        error = "the body must be a JSON object like {\"reason\": \"...\", \"rule\": \"...\"}";
        return std::nullopt;
    }
    for (auto field : object) {
        std::string_view key;
        std::string_view value;
        if (field.unescaped_key().get(key) != simdjson::SUCCESS) {
            error = "malformed JSON body";
            return std::nullopt;
        }
        if (key != "reason" && key != "rule") {
            error = "unknown field '" + std::string(key) + "' (allowed: reason, rule)";
            return std::nullopt;
        }
        if (field.value().get_string().get(value) != simdjson::SUCCESS) {
            error = "'" + std::string(key) + "' must be a string";
            return std::nullopt;
        }
        (key == "reason" ? request.reason : request.rule) = std::string(value);
    }
    return request;
}

std::optional<std::string> readAdminToken(const std::string& file, std::string& error) {
    std::string token;
    std::string permission_problem;
    if (!readSecret(file, "", "admin token", token, error, &permission_problem)) {
        return std::nullopt;
    }
    if (!permission_problem.empty()) {
        error = permission_problem + " (the admin token is refused until only its owner can read it)";
        return std::nullopt;
    }
    if (token.size() < kMinAdminTokenBytes) {
        error = "admin token file " + file + " holds " + std::to_string(token.size()) +
                " bytes; the admin token must be at least " + std::to_string(kMinAdminTokenBytes) +
                " (for example: openssl rand -hex 32 > " + file + ")";
        return std::nullopt;
    }
    return token;
}

std::optional<std::string> configuredAdminToken(const AgentSettings& agent, std::string& error) {
    if (agent.admin_token_file.empty()) {
        return std::string();
    }
    auto token = readAdminToken(agent.admin_token_file, error);
    if (!token) {
        error = "agent.admin_token_file: " + error;
    }
    return token;
}

bool bearerMatches(std::string_view authorization, std::string_view token) {
    constexpr std::string_view kPrefix = "Bearer ";
    if (token.empty() || authorization.substr(0, kPrefix.size()) != kPrefix) {
        return false;
    }
    // Constant-time in the contents and the length of both (CRYPTO_memcmp over HMACs).
    return secretEquals(authorization.substr(kPrefix.size()), token);
}

void AdminToken::set(std::string token) {
    std::lock_guard lock(mutex_);
    token_ = std::move(token);
}

bool AdminToken::enabled() const {
    std::lock_guard lock(mutex_);
    return !token_.empty();
}

bool AdminToken::matches(std::string_view authorization) const {
    std::lock_guard lock(mutex_);
    return bearerMatches(authorization, token_);
}

std::string adminSocketPath(const std::string& state_dir) {
    return state_dir + "/admin.sock";
}

namespace {

std::size_t collect(char* data, std::size_t size, std::size_t n, void* out) {
    auto* body = static_cast<std::string*>(out);
    const std::size_t bytes = size * n;
    if (body->size() < (1u << 20)) {
        body->append(data, std::min(bytes, (std::size_t{1} << 20) - body->size()));
    }
    return bytes;
}

/// "0.0.0.0:9464" -> "127.0.0.1:9464", "[::]:9464" -> "[::1]:9464".
std::string reachable(const std::string& listen) {
    if (listen.rfind("0.0.0.0:", 0) == 0) {
        return "127.0.0.1:" + listen.substr(8);
    }
    if (listen.rfind("[::]:", 0) == 0) {
        return "[::1]:" + listen.substr(5);
    }
    if (!listen.empty() && listen.front() == ':') {
        return "127.0.0.1" + listen;
    }
    return listen;
}

}  // namespace

namespace {

AdminResponse adminCall(const AdminEndpoint& to, const std::string& path, const std::string* body,
                        std::chrono::nanoseconds timeout) {
    AdminResponse response;
    CURL* c = curl_easy_init();
    if (c == nullptr) {
        response.error = "cannot initialise libcurl";
        return response;
    }
    const bool local = !to.unix_socket.empty();
    // Over the socket the host part only fills the Host header.
    const std::string url = "http://" + (local ? std::string("localhost") : reachable(to.listen)) + path;
    curl_slist* headers = nullptr;
    std::string auth;
    if (body != nullptr) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        if (!local && !to.token.empty()) {
            auth = "Authorization: Bearer " + to.token;
            headers = curl_slist_append(headers, auth.c_str());
        }
    }
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    if (local) {
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, to.unix_socket.c_str());
    }
    if (headers != nullptr) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    }
    if (body != nullptr) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    }
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response.body);
    const CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
    } else {
        response.error = std::string(curl_easy_strerror(rc)) + " (" + (local ? to.unix_socket : url) + ")";
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return response;
}

}  // namespace

AdminResponse adminPost(const AdminEndpoint& to, const std::string& path, const std::string& body,
                        std::chrono::nanoseconds timeout) {
    return adminCall(to, path, &body, timeout);
}

AdminResponse adminGet(const AdminEndpoint& to, const std::string& path, std::chrono::nanoseconds timeout) {
    return adminCall(to, path, nullptr, timeout);
}

std::optional<std::string> jsonStringMember(std::string_view json, std::string_view key) {
    simdjson::ondemand::parser parser;
    const simdjson::padded_string padded(json);
    simdjson::ondemand::document doc;
    simdjson::ondemand::object object;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS || doc.get_object().get(object) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    for (auto field : object) {
        std::string_view name;
        if (field.unescaped_key().get(name) != simdjson::SUCCESS) {
            return std::nullopt;
        }
        if (name != key) {
            continue;
        }
        std::string_view value;
        if (field.value().get_string().get(value) != simdjson::SUCCESS) {
            return std::nullopt;
        }
        return std::string(value);
    }
    return std::nullopt;
}

SavedRollout loadSavedRollout(const Config& config, StatusSnapshot::Rollout& out, std::string& message) {
    if (!config.rollout || config.agent.state_dir.empty()) {
        message = "no [rollout] section or no agent.state_dir: nothing is saved";
        return SavedRollout::Refused;
    }
    const std::string path = config.agent.state_dir + "/rollout.json";
    std::string data;
    if (!readStateFile(path, data, message)) {
        if (message.empty()) {
            message = "no " + path + " yet";
            return SavedRollout::Missing;
        }
        message = path + ": " + message;
        return SavedRollout::Refused;
    }
    RolloutController controller(*config.rollout);
    std::string why;
    if (!controller.restore(data, why)) {
        message = path + " is refused (" + why + "); the agent starts the rollout afresh when it runs";
        return SavedRollout::Refused;
    }
    out = rolloutStatus(controller, config);
    return SavedRollout::Loaded;
}

bool rearmOffline(const Config& config, std::string& message) {
    if (config.agent.state_dir.empty()) {
        message = "no agent.state_dir configured: latches live only in a running daemon (restart it to clear them)";
        return false;
    }
    const std::string path = config.agent.state_dir + "/rules.state";
    std::string data;
    std::string why;
    if (!readStateFile(path, data, why)) {
        if (why.empty()) {
            message = "nothing to rearm: no " + path + " yet";
            return true;
        }
        message = path + ": " + why;
        return false;
    }
    rules::Engine engine(config.rules);
    if (!engine.restoreState(data, rules::SystemClock{}.now())) {
        message = path + " is corrupt or from another version; nothing cleared (the daemon ignores it too)";
        return false;
    }
    std::size_t latched = 0;
    for (std::size_t i = 0; i < engine.rules().size(); ++i) {
        for (const auto& group : engine.groupStatuses(i)) {
            latched += group.latched ? 1 : 0;
        }
    }
    engine.rearm();
    if (const auto err = writeFileAtomically(path, engine.saveState(), 0600)) {
        message = *err;
        return false;
    }
    message = "cleared " + std::to_string(latched) + " latch(es) in " + path;
    return true;
}

}  // namespace rollguard::agent
