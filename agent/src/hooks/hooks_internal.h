#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_writer.h"
#include "util/secret.h"

namespace rollguard::agent::detail {

// One factory per hook type; makeHook() (hook_runner.cpp) dispatches on HookConfig::type.
/// The env_file, json_file and toml_file hooks: `apply(config)` on every run (the event
/// is not used).
std::unique_ptr<Hook> makeFileHook(const HookConfig& config, HookResult (*apply)(const HookConfig&));
/// A file hook whose edit depends on the event (json_file's `append`): `apply(config,
/// event)` on every run.
std::unique_ptr<Hook> makeFileHook(const HookConfig& config, HookResult (*apply)(const HookConfig&, const BreachEvent&));
std::unique_ptr<Hook> makeWebhookHook(const HookConfig& config);
std::unique_ptr<Hook> makeScriptHook(const HookConfig& config, const HookEnvironment& environment);
std::unique_ptr<Hook> makeWebhookHook(const HookConfig& config, const HookEnvironment& environment);
std::unique_ptr<Hook> makeAlertmanagerHook(const HookConfig& config, const HookEnvironment& environment);

/// The fields of breachToJson, written into an object the caller has begun.
void writeBreachFields(JsonWriter& w, const BreachEvent& event);

/// "<external_url>/api/v1/status" ("" when external_url is empty; one slash kept).
std::string statusUrl(std::string_view external_url);

/// The labels an alert carries (Alertmanager body and push API), sorted by name:
/// alertname, severity, source, rule, instance, metric, group (if any), event labels.
std::vector<std::pair<std::string, std::string>> alertLabels(const BreachEvent& event);

/// Fills the environment's defaults (sleep, clock, random).
HookEnvironment completeEnvironment(HookEnvironment environment);

/// The secret reader all hooks share with the scrape sources (util/secret.h).
using ::rollguard::agent::readSecret;

// ---- script hooks (script.cpp), shared with the preflight --------------------------

/// The PATH used when neither the hook's `env` nor the agent's environment sets one.
inline constexpr const char* kDefaultScriptPath = "/usr/local/bin:/usr/bin:/bin";

/// The PATH a script hook runs with: its `env` PATH when set (env wins), else the
/// agent's, else kDefaultScriptPath.
std::string scriptPathVariable(const HookConfig& config);

/// What execve will be given for command[0]: a name with a '/' as it is; a bare name
/// looked up in `path` (the first regular file executable by the real user; an empty
/// entry is "."); "" when the bare name is not found.
std::string resolveExecutable(const std::string& name, const char* path);

/// Who a script runs as, resolved once when the hook is built (name service lookups
/// are not allowed between fork and exec).
struct ScriptCredentials {
    std::string error;  ///< non-empty: the user or group cannot be resolved; every run fails
    std::string who;    ///< "user nobody" / "group nogroup", for messages
    bool set_groups = false;
    std::vector<gid_t> groups;
    bool set_gid = false;
    gid_t gid = 0;
    bool set_uid = false;
    uid_t uid = 0;
    std::string home;       ///< the user's, when a user is configured
    std::string user_name;  ///< likewise
};

/// Resolves config.user / config.group (empty: nothing to switch to).
ScriptCredentials resolveScriptCredentials(const HookConfig& config);

/// Owns one file descriptor; closes it on destruction. Not thread-safe.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    ~UniqueFd() { reset(); }
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.fd_, -1));
        }
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

/// Shortest round-trip text for a double ("0.412", "200", "1e-05"); "null" for NaN/inf
/// when `json`, otherwise "NaN", "+Inf", "-Inf" (Prometheus spelling).
std::string formatDouble(double value, bool json);

/// Seconds as tidy text for messages: 0.3 -> "0.3s", 10 -> "10s".
std::string formatSeconds(std::chrono::nanoseconds d);

/// Milliseconds elapsed since `start` on the steady clock.
std::chrono::milliseconds elapsedSince(std::chrono::steady_clock::time_point start);

/// The result of a single-attempt hook that started at `start`.
inline HookResult finishedResult(std::chrono::steady_clock::time_point start, bool ok, std::string message) {
    HookResult result;
    result.ok = ok;
    result.message = std::move(message);
    result.duration = elapsedSince(start);
    return result;
}

/// `text` without leading and trailing whitespace.
std::string trimText(std::string_view text);

/// `d` in seconds, as the bodies and environment variables state durations.
inline double seconds(std::chrono::nanoseconds d) {
    return std::chrono::duration<double>(d).count();
}

/// The longest pause between two attempts of one hook run (webhook, alertmanager, script).
inline constexpr auto kMaxRetryBackoff = std::chrono::seconds{60};

// ---- editing a file in place (env_file, json_file, toml_file) ----------------------

/// What an edit function made of a file's text.
struct TextEdit {
    std::optional<std::string> error;  ///< set: refuse, the file stays as it is
    std::string text;                  ///< the new content (when changed)
    bool changed = false;              ///< false: the file already says what it should
};

/// Computes the new text from the current one. `exists` is false for a missing file that
/// is about to be created (text then empty); `path` is the resolved path, for messages.
using TextEditor = std::function<TextEdit(std::string_view text, bool exists, const std::string& path)>;

/// Edits config.path in place, the way every file-editing hook does:
///  - location: config.path's directory is opened once and everything after that is
///    opened relative to it (openat, fstatat, renameat) with O_NOFOLLOW. A symlink at the
///    path fails the hook, "<path> is a symbolic link to <target>; set follow_symlinks =
///    true to edit its target", unless config.follow_symlinks: then the link is resolved
///    once (realpath), the target's directory opened, and the target edited (the link
///    stays). A symlink swapped in after that is never followed: the open fails and
///    nothing changes.
///  - locking: an exclusive flock(2) on the file (opened O_RDONLY: it is replaced by a
///    rename, never written through this descriptor) is held while reading
///    and rewriting (waited for up to config.timeout, re-checking with fstatat that the
///    locked file is still the one at the name); a missing file fails with "<path> does
///    not exist (set create = true to create it)" unless config.create, which creates it
///    with mode 0600, owned by rollguard's user.
///  - owner: the rewrite keeps the original's mode, owner and group, or is refused
///    before anything is written with ownerKeepProblem's message + " (nothing
///    changed)" (a rename cannot keep an owner, and a file left to
///    rollguard's user may be unreadable to the service it configures; the group is kept
///    when rollguard is a member of it, the uid when it is rollguard's or rollguard has
///    CAP_CHOWN).
///  - writing: the new content replaces the file atomically (replaceFileAt: temp file in
///    the same directory with the original's mode and owner, fsync, renameat), then the
///    directory is fsynced; with config.backup the previous content is first written the
///    same way to `<name>.rollguard.bak` beside it. Unchanged content is not rewritten:
///    ok, "already up to date: <path>". An editor error fails the hook with that text and
///    changes nothing.
/// Messages name the resolved path (the directory through realpath; the link's target
/// with follow_symlinks). Success: "[created; ]<change> in <path>". Never throws (unless
/// `edit` does). Thread-safety: callable from any thread; concurrent edits of one file
/// serialize on the flock.
HookResult editFileInPlace(const HookConfig& config, const TextEditor& edit, std::string_view change);

/// editFileInPlace's read-and-edit step without the write: reads the file behind `fd`
/// from its start into `old_text` (nothing when !exists) and runs `edit` on it. The
/// preflight calls it to find content the hook would refuse.
TextEdit editText(int fd, bool exists, const TextEditor& edit, const std::string& path, std::string& old_text);

/// What a file hook computes, apart from the file: its editor and the description of its
/// change for messages; `error` set for a configuration the hook refuses before it looks
/// at the file (env_file: an invalid key). The editor holds its own copy of the config.
struct FileEdit {
    TextEditor edit;
    std::string change;
    std::optional<std::string> error;
};
FileEdit envFileEdit(const HookConfig& config);                               // env_file.cpp
FileEdit jsonFileEdit(const HookConfig& config, const BreachEvent& event);    // json_file.cpp
FileEdit tomlFileEdit(const HookConfig& config);                              // toml_file.cpp
/// The FileEdit of config.type (an error for a hook that edits no file).
FileEdit fileEditFor(const HookConfig& config, const BreachEvent& event);

/// The preflight problems of an env_file, json_file or toml_file hook (file_edit.cpp):
/// what editFileInPlace would refuse or fail on, found without changing anything
/// (nothing created, written or locked). Each is one sentence, what is wrong and what to
/// do: the path's directory missing or not openable; a symlink without follow_symlinks;
/// the file missing without `create`; not a regular file; not readable by the effective
/// user (faccessat AT_EACCESS; write permission on it is not needed, a rename replaces
/// it); the directory not writable and searchable
/// (temp file, rename); the owner or group not keepable (ownerKeepProblem, the rule the
/// run refuses by); a directory where the backup goes; the current content refused by
/// the hook's editor (invalid JSON or TOML, an env file's unclosed quote).
std::vector<std::string> preflightFileHook(const HookConfig& config);

/// `config` with {{rollout_percent}} replaced by event.rollout_percent in the values
/// usesRolloutPercent() looks at: env_file `set` values, json_file / toml_file `set`
/// values (a string that is exactly the placeholder becomes an integer; inside a longer
/// string it is text), script `env` values and command arguments after command[0].
/// Returns the error, leaving `out` alone, when the event has no percentage.
std::optional<std::string> fillRolloutPercent(const HookConfig& config, const BreachEvent& event, HookConfig& out);

/// A float as TOML and JSON read it back as a float: shortest round-trip digits, ".0"
/// added when they look integral ("0.0", "1e+20", "0.25"); "nan", "inf", "-inf" (TOML).
std::string floatText(double value);

/// The index an array segment of a JSON pointer names, or nullopt ("0", "12"; not "-",
/// "01", "x", nor one beyond size_t).
std::optional<std::size_t> pointerArrayIndex(std::string_view segment);

/// The JSON pointer made of the first `n` of `segments`, escaped again ("" for n = 0).
std::string pointerPrefix(const std::vector<std::string>& segments, std::size_t n);

/// pointerPrefix for messages: "the document" for n = 0.
std::string pointerPlaceName(const std::vector<std::string>& segments, std::size_t n);

/// "set /a=false, /b=0; unset /c" for a json_file / toml_file hook's config.
std::string describeFlagChange(const std::vector<FlagSetting>& set, const std::vector<std::string>& unset);

}  // namespace rollguard::agent::detail
