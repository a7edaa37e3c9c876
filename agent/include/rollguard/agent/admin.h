#pragma once
// What `rollguard rollback`, `rollguard rearm` and the admin API share: knowing whether a
// daemon is running on a state directory, reaching it, and acting without it.

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "rollguard/agent/config.h"
#include "rollguard/agent/daemon.h"

namespace rollguard::agent {

/// An exclusive flock(2) on `<state_dir>/lock`, holding the holder's pid as text. The
/// daemon holds it for its lifetime, so two daemons never share a state directory, and
/// the CLI knows whether to go through the running daemon or act directly (holding the
/// lock while it does). The kernel drops the lock when the process dies, even by
/// SIGKILL, so a stale lock file never blocks anyone. Not thread-safe; move-only.
class StateDirLock {
public:
    enum class Outcome { Acquired, HeldByOther, Failed };
    /// Tries once, without waiting; creates the state directory (0700) when missing. On HeldByOther, `detail` is "pid N" (or "another
    /// process"); on Failed, the reason.
    static Outcome tryAcquire(const std::string& state_dir, std::optional<StateDirLock>& lock, std::string& detail);

    StateDirLock(StateDirLock&& other) noexcept;
    StateDirLock& operator=(StateDirLock&&) = delete;
    StateDirLock(const StateDirLock&) = delete;
    StateDirLock& operator=(const StateDirLock&) = delete;
    ~StateDirLock();

private:
    explicit StateDirLock(int fd) : fd_(fd) {}
    int fd_ = -1;
};

/// The body of POST /api/v1/rollback: an optional JSON object {"reason": "...", "rule":
/// "..."}; an empty body means no reason and every critical rule.
struct AdminRequest {
    std::string reason;
    std::string rule;
};
std::optional<AdminRequest> parseAdminRequest(std::string_view body, std::string& error);

/// The admin token from `agent.admin_token_file` (surrounding whitespace trimmed).
/// nullopt with `error` when the file is unreadable, readable or writable by group or
/// others, or holds fewer than kMinAdminTokenBytes: a token that others can read or guess
/// would let them roll back, so it is refused rather than warned about.
inline constexpr std::size_t kMinAdminTokenBytes = 32;
std::optional<std::string> readAdminToken(const std::string& file, std::string& error);

/// The token the agent's TCP admin endpoints take with `agent` as configured: "" when
/// `admin_token_file` is not set (those endpoints off), else readAdminToken's. nullopt
/// with `error` ("agent.admin_token_file: <why>") when it would be refused. The one
/// check behind the agent's start, its reloads and `rollguard check --preflight`.
std::optional<std::string> configuredAdminToken(const AgentSettings& agent, std::string& error);

/// Constant-time comparison of an `Authorization` header with "Bearer <token>": the time
/// depends neither on the contents nor on the lengths (CRYPTO_memcmp over HMACs).
bool bearerMatches(std::string_view authorization, std::string_view token);

/// The bearer token the TCP admin endpoints accept, replaced when a reload re-reads
/// `admin_token_file` while requests are being checked against it. Empty: the TCP admin
/// endpoints are off. Thread-safe.
class AdminToken {
public:
    void set(std::string token);
    bool enabled() const;
    bool matches(std::string_view authorization) const;

private:
    mutable std::mutex mutex_;
    std::string token_;
};

/// `<state_dir>/admin.sock`: the Unix socket the daemon serves its API on (mode 0600,
/// peer credentials checked) and the CLI reaches it through without a token.
std::string adminSocketPath(const std::string& state_dir);

/// Where the CLI reaches a daemon: its Unix socket when `unix_socket` is set (no token),
/// else http://<listen> (a wildcard listen address is reached on loopback) with the
/// bearer `token` for POSTs.
struct AdminEndpoint {
    std::string unix_socket;
    std::string listen;
    std::string token;
};

struct AdminResponse {
    long status = 0;     ///< HTTP status; 0 when no answer arrived
    std::string body;    ///< response body (at most 1 MiB kept)
    std::string error;   ///< curl's error text when status == 0
};
/// POSTs `body` (JSON) to `path` at `to`. Never throws.
AdminResponse adminPost(const AdminEndpoint& to, const std::string& path, const std::string& body,
                        std::chrono::nanoseconds timeout);

/// GETs `path` at `to` (no token: the read-only endpoints need none), as adminPost.
AdminResponse adminGet(const AdminEndpoint& to, const std::string& path, std::chrono::nanoseconds timeout);

/// The string member `key` of the JSON object `json` (unescaped), or nullopt when `json`
/// is not an object or has no such string member. Never throws.
std::optional<std::string> jsonStringMember(std::string_view json, std::string_view key);

/// The rollout state a daemon saved in `<state_dir>/rollout.json`, read without one
/// (`rollguard rollout status` with no agent running). Missing: no file yet; Refused: the
/// file cannot be read or the controller refuses it (`message` says why).
enum class SavedRollout { Loaded, Missing, Refused };
SavedRollout loadSavedRollout(const Config& config, StatusSnapshot::Rollout& out, std::string& message);

/// `rollguard rearm` without a daemon: loads `<state_dir>/rules.state`, clears every
/// latch and writes it back (0600, atomically). Returns false with `message` on failure;
/// true with a summary ("cleared 2 latch(es) in ...") otherwise.
bool rearmOffline(const Config& config, std::string& message);

}  // namespace rollguard::agent
