#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/rules/clock.h"

namespace rollguard::agent {

/// What a hook is told about the breach that triggered it.
struct BreachEvent {
    std::string rule;
    std::string severity;    ///< "critical" | "warning"
    std::string state;       ///< "firing" (later: "resolved")
    std::string source;
    std::string metric;      ///< as written, e.g. "p99"
    double value = 0.0;      ///< metric value (seconds for latency metrics)
    double threshold = 0.0;
    std::string comparison;  ///< "above" | "below"
    std::int64_t samples = 0;
    std::chrono::nanoseconds window{0};
    std::chrono::nanoseconds for_{0};
    rules::TimePoint since{};   ///< breach began
    rules::TimePoint fired_at{};
    std::string host;
    std::string summary;     ///< one human line, e.g. "p99 412ms > 200ms over 30s"
    std::string description;
};

/// Renders the generic JSON body sent by webhooks (also used in logs):
/// {"rule","severity","state","source","metric","value","threshold","comparison",
///  "samples","window_seconds","for_seconds","since","fired_at","host","summary",
///  "description"}; times in RFC 3339 UTC.
std::string breachToJson(const BreachEvent& event);

/// Environment variables a script receives: ROLLGUARD_RULE, ROLLGUARD_SEVERITY,
/// ROLLGUARD_STATE, ROLLGUARD_SOURCE, ROLLGUARD_METRIC, ROLLGUARD_VALUE,
/// ROLLGUARD_THRESHOLD, ROLLGUARD_COMPARISON, ROLLGUARD_SAMPLES, ROLLGUARD_WINDOW_SECONDS,
/// ROLLGUARD_FOR_SECONDS, ROLLGUARD_SINCE, ROLLGUARD_FIRED_AT, ROLLGUARD_HOST,
/// ROLLGUARD_SUMMARY.
std::vector<std::pair<std::string, std::string>> breachToEnv(const BreachEvent& event);

struct HookResult {
    bool ok = false;
    std::string message;  ///< what happened, one line ("set NEW_ROUTER_ENABLED=0", "HTTP 200")
    std::chrono::milliseconds duration{0};
    int attempts = 1;
};

/// One action. Implementations never throw: failures are results.
/// Thread-safety: run() is called from the hook worker thread only.
class Hook {
public:
    virtual ~Hook() = default;
    virtual const std::string& name() const = 0;
    virtual HookType type() const = 0;
    virtual HookResult run(const BreachEvent& event) = 0;
};

/// Builds the hook a config describes.
///  - env_file: applyEnvFile(config); the event is not used.
///  - webhook: POSTs breachToJson(event) with `Content-Type: application/json` (unless a
///    configured header sets it), `User-Agent: rollguard/<version>` and the configured
///    headers. `timeout` bounds each attempt as a whole (connect: at most 5 s). Connection
///    errors, timeouts, 5xx and 429 are retried up to `retries` times, sleeping
///    `retry_backoff`, then twice that, and so on (capped at 60 s); other 4xx, 3xx
///    (redirects are not followed) and bad URLs fail at once, "(not retried)". Only http
///    and https are allowed. Messages: "HTTP 200", "HTTP 200 after 3 attempts",
///    "HTTP 400: <first line of the body> (not retried)", or curl's error text.
///  - script: fork + execve of `command` (never a shell; a bare name is looked up in
///    PATH), in its own process group, stdin /dev/null, stdout+stderr captured (last
///    64 KiB), environment = the agent's + breachToEnv(event) + `env`. Messages:
///    "exit status N[: output]", "killed by signal N (SIGX)", "cannot execute '<path>':
///    <reason>", "timed out after Xs[: output]". On timeout the whole group gets SIGTERM,
///    then SIGKILL after a grace of min(max(timeout, 100 ms), 2 s). When the script exits
///    on its own, children it left in the background are not waited for nor killed.
std::unique_ptr<Hook> makeHook(const HookConfig& config);

// ---- env files -------------------------------------------------------------------

/// Rewrites the text of a KEY=value file (systemd EnvironmentFile / dotenv syntax):
/// keys in `set` get their new value on their existing line (keeping an `export `
/// prefix), missing ones are appended at the end; keys in `unset` lose their lines.
/// Every other line, comment and blank line is kept byte for byte, in order.
/// Values that need it are double-quoted with escapes. `changed` tells whether the
/// result differs from the input.
///
/// Dialect: a definition is `[blanks][export<blanks>]KEY[blanks]=[blanks]VALUE`; lines
/// starting with `#` or `;` and anything else that does not parse are kept verbatim.
/// VALUE is `'single'` (literal), `"double"` (escapes \" \\ \$ \` and \n; any other
/// backslash is literal; may span lines) or unquoted (runs to the end of the line,
/// trailing blanks trimmed; a `#` in it is part of the value, as in systemd).
/// Replacing keeps everything up to the value (indentation, `export`, spacing) and, for
/// a quoted value, the text after the closing quote (e.g. a comment); an unquoted value
/// is replaced up to the end of its line. A line whose value already equals the wanted
/// one is kept untouched, so a second run changes nothing. Every line of a key is
/// replaced; missing keys are appended as `KEY=value\n` in `set` order (a later
/// duplicate in `set` wins). New values are written bare when they only contain
/// [A-Za-z0-9_./:,@%+-], else double-quoted. A key in both `set` and `unset` is removed.
/// Line endings (LF or CRLF) of kept and replaced lines are preserved.
std::string rewriteEnvText(std::string_view text,
                           const std::vector<std::pair<std::string, std::string>>& set,
                           const std::vector<std::string>& unset, bool* changed);

/// Applies rewriteEnvText to a file atomically: temp file in the same directory with
/// the original's mode (and owner when permitted), fsync, rename over, fsync the
/// directory; the previous version is kept as `<path>.rollguard.bak` when `backup`.
///
/// Details: keys must match [A-Za-z_][A-Za-z0-9_]*. A symlink is followed and its target
/// edited (the link stays). An exclusive flock(2) on the existing file is held while
/// reading and rewriting (waited for up to `timeout`). A missing file fails with
/// "<path> does not exist (set create = true to create it)" unless `create`, which
/// makes it with mode 0600. Temp files are `<dir>/.<name>.rollguard.XXXXXX`, removed
/// on failure. The backup is written (atomically, same mode) before the new content is
/// renamed in, and only when the content changes. Unchanged content is not rewritten:
/// ok, "already up to date: <path>". Otherwise the message is
/// "[created; ]set A=0, B=1; unset C in <path>". Never throws.
HookResult applyEnvFile(const HookConfig& config);

// ---- running hooks ---------------------------------------------------------------

/// Runs hooks off the evaluation thread: a queue and one worker. Each job runs its
/// hooks in order; every outcome is reported to the callback (logging, metrics).
/// A hook that throws is reported as failed ("hook threw: <what>"); a zero duration is
/// filled in with the measured one.
/// Thread-safety: all methods from any thread; the callback runs on the worker.
class HookRunner {
public:
    using Callback = std::function<void(const std::string& hook, const BreachEvent&, const HookResult&)>;

    explicit HookRunner(Callback on_result = {});
    ~HookRunner();  // drains the queue, then joins
    HookRunner(const HookRunner&) = delete;
    HookRunner& operator=(const HookRunner&) = delete;

    void add(std::unique_ptr<Hook> hook);
    /// Queues the named hooks for `event`; unknown names are reported as failures
    /// ("unknown hook"). After stop() nothing is queued: each named hook is reported at
    /// once, on the calling thread, as failed with "hook runner is stopped".
    void enqueue(std::vector<std::string> hook_names, BreachEvent event);
    /// Blocks until the queue is empty and no hook is running (tests, shutdown).
    void waitIdle();
    /// Stops accepting work, finishes the queue and joins the worker; idempotent.
    void stop();

private:
    void workerLoop();
    struct Job {
        std::vector<std::string> hooks;
        BreachEvent event;
    };
    Callback on_result_;
    std::vector<std::unique_ptr<Hook>> hooks_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::condition_variable idle_cv_;
    std::deque<Job> queue_;
    bool busy_ = false;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace rollguard::agent
