#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "rollguard/agent/config.h"
#include "rollguard/agent/rule_value.h"
#include "rollguard/rules/clock.h"
#include "rollguard/rules/compare.h"

namespace rollguard::agent {

/// The outcome of one earlier hook of the same run, as later hooks see it.
struct HookStep {
    std::string hook;
    std::string status;   ///< "ok" | "failed" | "skipped" | "spooled"
    std::string message;  ///< the hook's one-line result
};

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
    std::string group;       ///< the rule's group ("" when none)
    std::vector<std::pair<std::string, std::string>> labels;  ///< extra labels, in order
    /// Stable per incident; empty: incidentId() derives it from rule, group and since.
    std::string incident_id;
    rules::TimePoint resolved_at{};  ///< when state == "resolved"
    /// The hooks that ran before this one for the same event, in order (filled by the
    /// HookRunner): a notify step placed after a rollback step reports its outcome.
    std::vector<HookStep> steps;
    std::string reason;  ///< a manual rollback's --reason ("" for a rule)
    /// Set for the events of the rollout controller ([rollout]): the percentage the
    /// rollout moves to. File hooks replace `{{rollout_percent}}` in their values with
    /// it; scripts get ROLLGUARD_ROLLOUT_PERCENT. A hook whose values use the
    /// placeholder fails on an event without it.
    std::optional<int> rollout_percent;
    int rollout_previous_percent = 0;  ///< with rollout_percent: where it moves from
    /// A baseline-relative rule: the baseline `value` was compared with (metric unit).
    std::optional<double> baseline;
    /// A compare rule: its test; `value` is then the effect size, not a metric value.
    std::optional<rules::MannWhitneyResult> mann_whitney;
    /// For those two kinds of rule, what the value is, in words ("p50 +13.3% vs
    /// baseline, p=4.5e-4 (threshold +10%, p < 0.02)"); empty for an absolute threshold.
    std::string value_text;
};

/// The event's figures for rule_value.h's formatting and JSON fields (NaN: unknown).
ValueReading valueReadingOf(const BreachEvent& event);

/// event.incident_id, or when empty the first 16 hex digits of
/// SHA-256("<rule>\n<group>\n<since as Unix nanoseconds>"): the same incident gives the
/// same id in every process, before and after a restart.
std::string incidentId(const BreachEvent& event);

/// The `Idempotency-Key` a hook sends: hex SHA-256 of "<incident id>\n<state>\n<hook>",
/// so one incident's one event to one hook has one key across retries and restarts.
std::string idempotencyKey(const BreachEvent& event, std::string_view hook_name);

// ---- signing (OpenSSL libcrypto) ---------------------------------------------------
// The digests come from libcrypto rather than our own code: a maintained, reviewed and
// tested implementation; libcurl already loads libssl/libcrypto at run time.

/// SHA-256 (FIPS 180-4) of `data`.
std::array<std::uint8_t, 32> sha256(std::string_view data);
/// Lower-case hex of sha256(data).
std::string sha256Hex(std::string_view data);
/// HMAC-SHA256 (RFC 2104) of `message` under `key`, lower-case hex.
std::string hmacSha256Hex(std::string_view key, std::string_view message);
/// The X-Rollguard-Signature value: "sha256=" + hmacSha256Hex(secret, "<timestamp>.<body>").
std::string webhookSignature(std::string_view secret, std::int64_t unix_seconds, std::string_view body);
/// True when `a` == `b`, in time independent of their contents and of their lengths:
/// compares HMAC-SHA256 of both under a per-process random key with CRYPTO_memcmp. For
/// every comparison of a secret, token or signature with something a peer sent.
bool secretEquals(std::string_view a, std::string_view b);

// ---- payload formats ---------------------------------------------------------------

/// Where the formats get their context from besides the event.
struct PayloadContext {
    std::string hook_name;      ///< Alertmanager "receiver"
    std::string external_url;   ///< "" omits status_url and leaves externalURL empty
    std::string routing_key;    ///< pagerduty
};

/// The body of a webhook hook for `format`:
///  - Json: breachToJson plus "labels" (object), "group", "incident_id" and, with an
///    external URL, "status_url" = "<external_url>/api/v1/status"; resolved events add
///    "resolved_at"; [rollout] events add "rollout": {"percent", "previous_percent"}.
///  - Alertmanager: the Alertmanager webhook receiver payload, version "4", one alert:
///    labels {alertname=rule, severity, source, rule, instance=host, group (if any),
///    metric, + event labels}, annotations {summary, description}, startsAt = since,
///    endsAt = resolved_at or "0001-01-01T00:00:00Z" while firing, generatorURL = the
///    status URL, fingerprint = 16 hex digits of SHA-256 of the sorted labels;
///    groupKey `{}:{alertname="<rule>"}`, groupLabels {alertname}.
///  - Slack: {"text": "<:red_circle:|:large_orange_circle:|:white_check_mark:> [STATE]
///    <rule> on <host>: <metric> <value> <above|below> <threshold> over <window>",
///    "attachments":[{"color": "#d00000" (critical firing) | "#f2c744" (warning firing)
///    | "#2eb67d" (resolved), "fields": [...]}]}: colour by state through the legacy
///    attachments, since Block Kit has none.
///  - PagerDuty: Events API v2: firing {"routing_key","event_action":"trigger",
///    "dedup_key": incident id,"payload":{"summary","source": host,"severity":
///    "critical"|"warning","timestamp": fired_at,"component": source,"group",
///    "class": metric,"custom_details":{rule, value, threshold, comparison, samples,
///    window_seconds, since, labels...}},"links"?}; resolved {"routing_key",
///    "event_action":"resolve","dedup_key"}.
std::string renderWebhookBody(WebhookFormat format, const BreachEvent& event, const PayloadContext& context);

/// Fills {{name}} placeholders: rule, severity, state, source, metric, value, threshold,
/// comparison, samples, window_seconds, for_seconds, since, fired_at, resolved_at, host,
/// summary, description, group, incident_id, status_url, rollout_percent and
/// rollout_previous_percent (empty for an event that is not a [rollout] one), json (the whole json-format
/// body, inserted raw). With `json_escape` every other value is inserted escaped for
/// use inside a JSON string (no quotes added). Unknown placeholders and a lone "{{" are
/// kept as written; there is no other syntax (no loops, no expressions).
std::string renderBodyTemplate(std::string_view tmpl, const BreachEvent& event, const PayloadContext& context,
                               bool json_escape);

/// Full-jitter exponential backoff: random01 * min(cap, base * 2^retry), retry from 0.
std::chrono::nanoseconds backoffDelay(int retry, std::chrono::nanoseconds base, std::chrono::nanoseconds cap,
                                      double random01);

/// Renders the generic JSON body sent by webhooks (also used in logs):
/// {"rule","severity","state","source","metric","value","threshold","comparison",
///  "samples","window_seconds","for_seconds","since","fired_at","host","summary",
///  "description"}, then writeValueFields()'s "baseline"/"ratio" or "mann_whitney" when
///  the rule has them; times in RFC 3339 UTC.
std::string breachToJson(const BreachEvent& event);

/// Environment variables a script receives: ROLLGUARD_RULE, ROLLGUARD_SEVERITY,
/// ROLLGUARD_STATE, ROLLGUARD_SOURCE, ROLLGUARD_METRIC, ROLLGUARD_VALUE,
/// ROLLGUARD_THRESHOLD, ROLLGUARD_COMPARISON, ROLLGUARD_SAMPLES, ROLLGUARD_WINDOW_SECONDS,
/// ROLLGUARD_FOR_SECONDS, ROLLGUARD_SINCE, ROLLGUARD_FIRED_AT, ROLLGUARD_HOST,
/// ROLLGUARD_SUMMARY, ROLLGUARD_INCIDENT_ID, ROLLGUARD_REASON (a manual rollback's
/// reason, else empty), ROLLGUARD_STEPS (JSON array of the earlier steps:
/// [{"hook","status","message"}]) and ROLLGUARD_STEPS_FAILED (how many of them failed);
/// for a [rollout] event (rollout_percent set) also ROLLGUARD_ROLLOUT_PERCENT and
/// ROLLGUARD_ROLLOUT_PREVIOUS_PERCENT.
std::vector<std::pair<std::string, std::string>> breachToEnv(const BreachEvent& event);

/// Delivery counters of a hook with a spool (zero for the others); exporters read them
/// through HookRunner::counters().
struct HookCounters {
    std::uint64_t spooled = 0;         ///< deliveries written to the spool
    std::uint64_t spool_delivered = 0; ///< delivered later by the spool worker
    std::uint64_t spool_dropped = 0;   ///< dropped: spool full (oldest first) or rejected 4xx
    std::uint64_t spool_pending = 0;   ///< entries in the spool now
    std::uint64_t spool_write_failures = 0;  ///< spool files that could not be written (disk full, read-only)
    std::uint64_t spool_write_failing = 0;   ///< 1 while the last spool write failed, else 0
};

struct HookResult {
    bool ok = false;
    std::string message;  ///< what happened, one line ("set NEW_ROUTER_ENABLED=0", "HTTP 200")
    /// What may be shown where anyone can read it (the unauthenticated /api/v1/status),
    /// when `message` carries more: a script's message ends with up to 64 KiB of its
    /// output, which may hold secrets, so its summary is the status part only ("exit
    /// status 3 (output in the incident record)"). Empty: `message` itself is the
    /// summary. Read it through statusSummary(), which also bounds it.
    std::string summary;
    std::chrono::milliseconds duration{0};
    int attempts = 1;
    bool skipped = false;  ///< not run: its RunIf did not hold (ok is true)
    /// The first attempt did not deliver and delivery goes on in the background (the
    /// webhook's retries and spool): ok is false, the step's status is "spooled", and
    /// the final result follows through the hook's completion (Hook::setCompletion).
    bool deferred = false;
    /// With `deferred`: the delivery is in the on-disk spool, so it survives this process
    /// (HookRunner::waitIdle does not wait for it).
    bool durable = false;
};

/// Longest statusSummary(), in bytes (before its "..." mark).
inline constexpr std::size_t kStatusSummaryMaxBytes = 200;

/// The short, redacted form of a result for the status snapshot (/api/v1/status):
/// `summary` when set, else `message`; its first line only, cut to at most
/// kStatusSummaryMaxBytes on a UTF-8 character boundary ("..." marks a cut). The full
/// message stays in the incident record (0600 in state_dir; `rollguard incidents`).
/// Cutting here rather than in the renderer keeps the full text out of the snapshot
/// altogether, and the separate `summary` (set by the hook that knows which part is
/// output) avoids parsing messages back apart.
std::string statusSummary(const HookResult& result);

/// One action. Implementations never throw: failures are results.
/// Thread-safety: run() may be called from several threads at once (the HookRunner's
/// lanes: two rules sharing a hook run it concurrently); counters() from any thread.
class Hook {
public:
    /// Receives the final result of a run that returned `deferred`, on the hook's own
    /// thread, with the event that run was given.
    using Completion = std::function<void(const BreachEvent&, const HookResult&)>;

    virtual ~Hook() = default;
    virtual const std::string& name() const = 0;
    virtual HookType type() const = 0;
    virtual HookResult run(const BreachEvent& event) = 0;
    virtual HookCounters counters() const { return {}; }
    /// Set before the first run() (HookRunner::add does); without one a deferred
    /// delivery's outcome is only logged by the hook.
    void setCompletion(Completion completion) { completion_ = std::move(completion); }

protected:
    /// Reports a deferred run's final result (no-op without a completion).
    void complete(const BreachEvent& event, const HookResult& result) const {
        if (completion_) {
            completion_(event, result);
        }
    }

private:
    Completion completion_;
};

/// What hooks get from their surroundings; tests inject fakes so nothing waits long.
struct HookEnvironment {
    /// Sleeps between in-process retries; default std::this_thread::sleep_for.
    std::function<void(std::chrono::nanoseconds)> sleep;
    /// Wall clock for timestamps (signature, spool times, endsAt); default system clock.
    /// Must outlive the hook.
    const rules::Clock* clock = nullptr;
    /// Uniform in [0, 1) for backoff jitter; default a seeded std::mt19937_64.
    std::function<double()> random01;
    /// Test seam (empty: nothing is called) of the alertmanager hook, so a test can force
    /// an interleaving without sleeping: "resend" on the re-send thread just before a
    /// re-send POST (the hook's send lock held: run() cannot post until it returns),
    /// "idle" when the re-send thread wakes up with nothing firing, "wait" on run()'s
    /// thread when a send is in flight and run() is about to wait for it. Must not call
    /// into the hook.
    std::function<void(std::string_view)> observe;
};

/// Whether a hook's action can work, found without side effects (nothing is written,
/// posted or run): checked at start, on reload and by `rollguard check --preflight`.
struct HookPreflight {
    std::string hook;
    bool ready = true;                  ///< no problems
    std::vector<std::string> problems;  ///< each a sentence: what is wrong and what to do
};

/// The preflight of one hook (see HookPreflight). File hooks: detail::preflightFileHook.
/// Never throws; may block up to a few seconds on a DNS lookup.
HookPreflight preflightHook(const HookConfig& config);

/// One preflight problem as `rollguard check --preflight` and the log show it:
/// "file:line:col: hook NAME: problem" (the location of the hook's [[hook]] table).
std::string formatPreflightProblem(const HookConfig& config, const std::string& problem);

/// The names of the hooks whose preflight decides readiness under `mode` (see
/// ReadinessPreflight): with Critical those of critical rules and [rollout]'s `hooks`
/// and `rollback_hooks`, in config order.
std::vector<std::string> gatingHooks(const Config& config, ReadinessPreflight mode);

/// Builds the hook a config describes.
///  - env_file: applyEnvFile(config); the event is not used.
///  - json_file: applyJsonFile(config, event) (the event fills `append` placeholders).
///  - toml_file: applyTomlFile(config); the event is not used.
///  - webhook: POSTs renderWebhookBody(format, event) with `Content-Type:
///    application/json` (unless a configured header sets it), `User-Agent:
///    rollguard/<version>` and the configured headers (details below). `timeout` bounds
///    each attempt as a whole (connect: at most 5 s). Connection errors, timeouts, 5xx
///    and 429 are retried up to `retries` times, sleeping backoffDelay(n,
///    retry_backoff, 60 s) (full jitter); other 4xx, 3xx (redirects are not followed)
///    and bad URLs fail at once, "(not retried)". Only http and https are allowed.
///    Messages: "HTTP 200", "HTTP 200 after 3 attempts", "HTTP 400: <first line of the
///    body> (not retried)", or curl's error text.
///  - script: fork + execve of `command` (never a shell; a bare name is looked up in
///    the script's PATH), in its own process group, stdin /dev/null, stdout+stderr
///    captured (last 64 KiB). Messages: "exit status N[: output]", "killed by signal N
///    (SIGX)", "cannot execute '<path>': <reason>", "timed out after Xs[: output]",
///    "cannot change to working directory '<dir>': <reason>", "cannot drop privileges
///    to user X: <reason>" (or "group X" with only `group`). On timeout the whole group
///    gets SIGTERM, then SIGKILL after a grace of min(max(timeout, 100 ms), 2 s). When
///    the script exits on its own, children it left in the background are not waited
///    for nor killed.
///
/// Script execution (decisions, also in README and docs/config.md):
///  - environment: NOT the agent's whole environment, which may hold secrets (webhook
///    tokens, cloud credentials) a script must not see. The script gets PATH (the
///    agent's, or "/usr/local/bin:/usr/bin:/bin" when unset), HOME, LANG, LC_ALL, TZ,
///    USER and LOGNAME when set in the agent, then the agent's value of each name in
///    `inherit_env` that is set, then breachToEnv(event), then `env` (later ones win).
///    With `user`, HOME, USER and LOGNAME are that user's (as login(1) sets them).
///  - workdir: the child changes to `workdir` before exec; empty: the agent's working
///    directory. A relative program path is still relative to the agent's directory.
///  - user/group: resolved (getpwnam_r/getgrnam_r, and the user's supplementary groups
///    as initgroups(3) would set them) when the hook is built; an unknown name makes
///    every run fail with "unknown user 'X'" / "unknown group 'X'". The child calls
///    setgroups (the user's groups; none with only `group`), setgid (`group`, else the
///    user's primary group), setuid, in that order, then chdir, then exec. As root this
///    always happens; otherwise a change to the ids the agent already has is skipped and
///    anything else fails with EPERM.
///  - retries: a run that started and failed (non-zero exit, killed by a signal, timed
///    out) is run again up to `retries` times (the loader's default for scripts is 0),
///    sleeping backoffDelay(n, retry_backoff, 60 s) through the environment's sleep
///    between runs. Failures to start (not found, cannot execute, workdir, privileges)
///    and an unknown exit status are not retried. `timeout` bounds each run. The message
///    is the last run's, with " after N attempts" when there were several ("exit status
///    0 after 2 attempts: <output>"); HookResult::attempts counts the runs.
///  Thread-safety: run() from any thread; concurrent runs are independent processes.
///
/// Webhook delivery (decisions, also in docs/config.md):
///  - body: renderWebhookBody(format) or, with body_template, renderBodyTemplate
///    (JSON-escaped values unless a configured Content-Type says otherwise).
///  - headers: Content-Type, User-Agent, the configured ones, `Authorization: Bearer`
///    from bearer_token_file/env, `Idempotency-Key: idempotencyKey(event, name)`,
///    with secret_file `X-Rollguard-Timestamp: <unix s>` and `X-Rollguard-Signature:
///    sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (re-signed per attempt).
///    Secrets are read at construction; a secret file readable by group/others is
///    logged as a warning; a missing one makes every run fail with a clear message.
///  - retries: run() makes the first attempt only; when it fails in a way a retry may
///    heal, run() returns `deferred` ("...; spooled, retrying in the background", or
///    without a spool "...; retrying in the background (N more attempt(s))") and the
///    hook's delivery thread makes the remaining attempts, full-jitter exponential
///    backoff, backoffDelay(n, retry_backoff, 60 s); the final result goes to the
///    completion (Hook::setCompletion).
///  - spool (state_dir set): the delivery is written to `<state_dir>/spool/` (0600,
///    atomic) *before* the first attempt, so a crash or a kill also leaves it there, and
///    deleted once delivered or rejected with a non-retryable status. After the retries
///    the delivery thread goes on with backoffDelay(n, retry_backoff, spool_max_backoff)
///    until delivered (without a spool it gives up); a new hook reloads the spool of its
///    name at construction. At most spool_max_entries per hook: the oldest is dropped,
///    logged and counted (HookCounters::spool_dropped).
///  - alertmanager: POSTs [{labels, annotations, startsAt, endsAt, generatorURL}] to
///    `<url>/api/v2/alerts`; a firing alert is re-sent every resend_interval by a thread
///    of the hook until its resolved event, which is sent with endsAt = the resolve time
///    (the event's resolved_at, else now). The hook's POSTs never overlap: a resolve
///    waits for a re-send in flight and is the last POST Alertmanager gets for that
///    alert (a stale "firing" can never land after it and re-open the alert). The daemon
///    sends a critical rule's resolve to its notification hooks (RuleSpec::resolve_hooks).
///    When the hook is destroyed (agent shutdown, reload) its firing alerts are neither
///    re-sent nor resolved: Alertmanager resolves each on its own at its last endsAt,
///    4 × resend_interval after the last send.
std::unique_ptr<Hook> makeHook(const HookConfig& config);
std::unique_ptr<Hook> makeHook(const HookConfig& config, const HookEnvironment& environment);

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
/// duplicate in `set` wins). A replaced value keeps its quoting: single-quoted stays
/// single-quoted (double-quoted if the new value contains '), double-quoted stays
/// double-quoted — so a comment after the closing quote never becomes part of the value.
/// Unquoted and appended values are written bare when they only contain
/// [A-Za-z0-9_./:,@%+-], else double-quoted. A key in both `set` and `unset` is removed.
/// Line endings (LF or CRLF) of kept and replaced lines are preserved.
std::string rewriteEnvText(std::string_view text,
                           const std::vector<std::pair<std::string, std::string>>& set,
                           const std::vector<std::string>& unset, bool* changed);

/// The 1-based line of the first definition whose quoted value is never closed (no
/// matching quote anywhere after it, so rewriteEnvText's dialect reads it as a plain
/// value), or nullopt. Such a file cannot be edited safely: a quote that an edit writes
/// after it (a quoted value, an appended line) would close it and swallow the lines in
/// between, so applyEnvFile refuses to change it (found by tests/fuzz/fuzz_env_file.cpp).
/// Pure; thread-safe.
std::optional<std::size_t> envUnterminatedQuoteLine(std::string_view text);

/// Applies rewriteEnvText to a file atomically: temp file in the same directory with
/// the original's mode, owner and group, fsync, rename over, fsync the directory; the
/// previous version is kept as `<path>.rollguard.bak` when `backup`.
///
/// Owner (a decision): the owner and group are kept, or nothing is changed
/// and the hook fails. A rename cannot keep an owner: the temp file is rollguard's until
/// fchown gives it the original's, which needs the uid to be rollguard's effective uid
/// (or CAP_CHOWN) and the gid one of its groups (or CAP_CHOWN). When it cannot, the
/// message says which and what to do: "cannot keep the owner of <path> (user app, uid
/// 1234): rollguard runs as user rollguard, uid 998, without CAP_CHOWN, ...; make
/// rollguard's user the file's owner (chown 998 <path>), or grant rollguard CAP_CHOWN
/// (...) (nothing changed)". Writing in place to keep a foreign owner was not chosen
/// (a crash would leave a torn file).
///
/// Symlinks: the file's directory is opened once and everything (file, temp file,
/// backup, rename) reached relative to it with O_NOFOLLOW. A symlink at `path` fails
/// with "<path> is a symbolic link to <target>; set follow_symlinks = true to edit its
/// target" unless `follow_symlinks`: the link is then resolved once and its target
/// edited (the link stays; messages name the target); a link swapped in after that
/// fails the run, never redirects the write.
///
/// Details: keys must match [A-Za-z_][A-Za-z0-9_]*. A file with a quoted value that is
/// never closed (envUnterminatedQuoteLine) is not changed: the hook fails with its line.
/// An exclusive flock(2) on the existing file is held while
/// reading and rewriting (waited for up to `timeout`). A missing file fails with
/// "<path> does not exist (set create = true to create it)" unless `create`, which
/// makes it with mode 0600. Temp files are `<dir>/.<name>.rollguard.XXXXXX`, removed
/// on failure. The backup is written (atomically, same mode and owner) before the new
/// content is renamed in, and only when the content changes. Unchanged content is not
/// rewritten (even when the owner could not be kept):
/// ok, "already up to date: <path>". Otherwise the message is
/// "[created; ]set A=0, B=1; unset C in <path>". Never throws.
HookResult applyEnvFile(const HookConfig& config);

// ---- flag files (json_file, toml_file) --------------------------------------------

/// The segments of a JSON Pointer (RFC 6901): "/a/b~1c/d~0e" -> {"a", "b/c", "d~e"};
/// "/" -> {""}. Returns nullopt with `why` set when the pointer is empty (the whole
/// document cannot be replaced), does not start with '/', or has a '~' not followed by
/// '0' or '1'. Pure.
std::optional<std::vector<std::string>> parseJsonPointer(std::string_view pointer, std::string* why = nullptr);

/// A flag value as written in messages: true, 0, 0.5, "text" (JSON string syntax).
std::string flagValueText(const FlagValue& value);

/// The outcome of rewriting a flag file's text.
struct FlagFileEdit {
    bool ok = false;
    std::string error;     ///< when !ok: why, e.g. "<name>:3:7: expected ',' or '}'"
    std::string text;      ///< when ok: the new document
    bool changed = false;  ///< when ok: false if every value already was as wanted
};

/// Sets and removes values of a JSON document, addressed by JSON Pointers. Pure; `name`
/// (a path) only prefixes parse errors: "<name>:<line>:<col>: <what>" (columns in bytes).
///
/// The document is parsed strictly (RFC 8259; a leading UTF-8 BOM is skipped, no
/// comments, no trailing commas) into an ordered tree: object members keep their order,
/// untouched numbers and strings keep their exact text (1.50 stays 1.50, big integers are
/// not rounded, escapes stay as written). A duplicate key keeps its first position and
/// its last value (last wins), so the result has it once.
///
/// `set` is applied in order, then `unset`. Missing intermediate objects are created
/// (new members go at the end of their object); an array index segment ("/list/0")
/// replaces an existing element; setting through anything else (a number, a string,
/// null, an index out of range, "-" which would append on every run) fails and names
/// the pointer. `unset` removes object members; one already absent is fine; removing an
/// array element is refused (a second run would remove the next one). Values keep their
/// type: booleans, integers, floats (written with a ".0" when integral, never NaN or
/// infinity) and strings. A value equal to the wanted one is left alone: numbers compare
/// by value (0 equals 0.0), so no change means `changed` false and the text untouched.
///
/// Output, when changed: the whole document pretty-printed with 2-space indentation and
/// a trailing newline; formatting (spacing, line breaks) is normalized, key order and
/// the text of numbers and strings are kept.
FlagFileEdit rewriteJsonText(std::string_view text, const std::vector<FlagSetting>& set,
                             const std::vector<std::string>& unset, std::string_view name = "json");

/// rewriteJsonText with appends: `set`, then `unset`, then each of `append` in order.
/// An append adds its element at the end of the array at its pointer (the pointer names
/// the array, not "/-"); a missing array is created (missing intermediate objects too,
/// as for `set`); an existing value that is not an array fails with "cannot append to
/// <pointer>: <pointer> is an object, not an array" (or a number, ...). Idempotent: when
/// an element equal to the wanted one is already in the array (objects: the same members
/// with equal values, in any order; numbers by value), nothing is appended, so a second
/// run changes nothing. String values are written as given: render placeholders first
/// (renderFlagAppend). Pure.
FlagFileEdit rewriteJsonText(std::string_view text, const std::vector<FlagSetting>& set,
                             const std::vector<std::string>& unset, const std::vector<FlagAppend>& append,
                             std::string_view name);

/// `entry` with every string value (object fields and a plain value alike) passed
/// through renderBodyTemplate(event, context, json_escape = false): the JSON escaping
/// happens when the value is written into the document, so a summary with quotes or
/// line breaks stays one valid JSON string. Other values are kept. Pure.
FlagAppend renderFlagAppend(const FlagAppend& entry, const BreachEvent& event, const PayloadContext& context);

/// The same for a TOML document, parsed and written by toml++: pointers address tables
/// and keys ("/phase_4/enabled" is `enabled` in `[phase_4]`), missing tables are created,
/// array index segments address elements of arrays (also of [[array]] tables). Values
/// compare by value and type (integer 0 differs from float 0.0, and is replaced). When
/// changed, the document is written by toml++'s formatter: comments and the original
/// layout are lost and keys come out in toml++'s order; that is the cost of editing a
/// TOML flag file without a round-tripping parser. Parse errors:
/// "<name>:<line>:<col>: <what>". Pure.
FlagFileEdit rewriteTomlText(std::string_view text, const std::vector<FlagSetting>& set,
                             const std::vector<std::string>& unset, std::string_view name = "toml");

/// Applies rewriteJsonText(config.flag_set, config.unset) to config.path with the same
/// guarantees as applyEnvFile: a symlink refused or, with `follow_symlinks`, its target
/// edited, flock held, atomic replace keeping mode and owner (or refused when the owner
/// cannot be kept), directory fsynced, backup `<path>.rollguard.bak` when `backup`,
/// missing file an error unless `create` (then it starts as `{}`, mode 0600). An invalid
/// document fails the hook with the parse error and its line:col and is left untouched.
/// Messages: "already up to date: <path>" or "[created; ]set /flags/x/enabled=false,
/// /rollout_percentage=0[; unset /old] in <path>". Never throws.
/// Thread-safety: callable from any thread; edits of one file serialize on the flock.
HookResult applyJsonFile(const HookConfig& config);

/// applyJsonFile with config.flag_append as well, each entry rendered for `event`
/// (renderFlagAppend with the hook's name and external_url) and applied after set and
/// unset. The message adds "append to /history" per pointer: "set /current_percentage=0;
/// append to /history in <path>"; "already up to date: <path>" when nothing changes
/// (every value as wanted, every element already there). makeHook's json_file hooks run
/// this one. Never throws. Thread-safety: as applyJsonFile.
HookResult applyJsonFile(const HookConfig& config, const BreachEvent& event);

/// applyJsonFile for TOML: rewriteTomlText; a created file starts as an empty document.
HookResult applyTomlFile(const HookConfig& config);

// ---- running hooks ---------------------------------------------------------------

/// Runs hooks off the evaluation thread, in lanes, so that nothing holds a rollback back.
///
/// Lanes (decisions, also in the README's "Hook order" section):
///  - A job is one event's list of hooks. Jobs with the same lane key (the event's rule
///    and group) run one after another in the order queued, each job's hooks in order:
///    a rule's fire, repeat and resolve never overtake each other. Jobs of different
///    lanes run at the same time, each on its own thread, so a hung hook of one rule or
///    incident never delays another's.
///  - A rule's groups (`group_by`) share at most kMaxRunningLanesPerRule threads; its
///    further groups wait for one of them, so a rule that fires for many groups at once
///    takes that many threads and no more, and other rules' lanes never wait on it.
///  - At most kMaxQueuedJobsPerRule jobs wait per rule. Beyond it the oldest waiting
///    job that is not a critical rule's fire is dropped: logged, counted (dropped()),
///    and each of its hooks reported to the callback as failed ("dropped: ..."). A
///    critical fire (a rollback) is never dropped; it is bounded by the latch anyway.
///  - A webhook returns after its first attempt when that attempt did not deliver
///    (HookResult::deferred): the steps after it wait at most one attempt's timeout.
///    The step is reported as "spooled"; the final result reaches the callback later,
///    from the hook's thread, with `deferred` false.
///
/// Each job's event `steps` receive the outcomes of the job's earlier hooks (appended
/// to any the caller put there, e.g. when resuming), so a later hook can report them; a
/// hook whose RunIf does not hold is not run and is reported as skipped (ok = true,
/// message "skipped: ..."; HookStep status "skipped"). For RunIf a "spooled" step has
/// not failed; RunIf does not apply to a resolved event (state "resolved"): it has no
/// rollback steps to judge, and must reach every notification its fire may have sent.
/// A hook that throws is reported as failed ("hook threw: <what>"); a zero
/// duration is filled in with the measured one.
/// Thread-safety: all methods from any thread; the callbacks run on lane threads and,
/// for deferred results, on the hooks' own threads.
class HookRunner {
public:
    using Callback = std::function<void(const std::string& hook, const BreachEvent&, const HookResult&)>;
    /// Called on the lane just before a hook runs (not for skipped hooks).
    using StartCallback = std::function<void(const std::string& hook, const BreachEvent&)>;

    static constexpr std::size_t kMaxRunningLanesPerRule = 4;
    static constexpr std::size_t kMaxQueuedJobsPerRule = 256;

    explicit HookRunner(Callback on_result = {}, StartCallback on_start = {});
    ~HookRunner();  // stop(): drains the lanes, then joins
    HookRunner(const HookRunner&) = delete;
    HookRunner& operator=(const HookRunner&) = delete;

    /// Adds a hook (before the first enqueue) and sets its completion to the callback.
    void add(std::unique_ptr<Hook> hook, RunIf run_if = RunIf::Always);
    /// Queues the named hooks for `event` in the lane of (event.rule, event.group);
    /// unknown names are reported as failures ("unknown hook"). After stop() nothing is
    /// queued: each named hook is reported at once, on the calling thread, as failed
    /// with "hook runner is stopped".
    void enqueue(std::vector<std::string> hook_names, BreachEvent event);
    /// Blocks until no job is queued or running and every deferred delivery that only
    /// lives in memory (not `durable`) has its final result (tests, `rollguard rollback`
    /// without a daemon: a process that exits after it loses nothing).
    void waitIdle();
    /// Stops accepting work, finishes the queued jobs and joins the lanes; idempotent.
    /// Deferred deliveries are not waited for (the spool keeps them across a restart).
    void stop();
    /// Each hook's name and counters, in the order added.
    std::vector<std::pair<std::string, HookCounters>> counters() const;
    /// Jobs dropped because their rule's queue was full.
    std::uint64_t dropped() const;
    /// Jobs waiting or running now.
    std::size_t queued() const;

private:
    struct Job {
        std::vector<std::string> hooks;
        BreachEvent event;
        /// A critical rule's fire (a rollback): never dropped.
        bool rollback() const { return event.severity == "critical" && event.state == "firing"; }
    };
    struct Entry {
        std::unique_ptr<Hook> hook;
        RunIf run_if = RunIf::Always;
    };
    struct Lane {
        std::deque<Job> jobs;
        bool running = false;
    };
    struct RuleLanes {
        std::map<std::string, Lane> by_group;
        std::deque<std::string> waiting;  // groups with jobs and no thread, in arrival order
        std::size_t running = 0;          // lanes of this rule with a thread
        std::size_t queued = 0;           // jobs not yet started, all groups
    };
    void laneLoop(std::string rule, std::string group);
    void runJob(Job& job);
    std::optional<Job> dropOneLocked(const std::string& rule, RuleLanes& lanes);
    void reportFailed(const Job& job, const std::string& message);
    void onDeferredRun(const std::string& hook, const BreachEvent& event, const HookResult& result);
    void onFinalResult(const std::string& hook, const BreachEvent& event, const HookResult& result);
    void reportFinal(const std::string& hook, const BreachEvent& event, const HookResult& result, bool durable);
    void reapLocked();
    const Entry* findHook(const std::string& name) const;

    Callback on_result_;
    StartCallback on_start_;
    std::vector<Entry> hooks_;  // only grows; entries own their hooks
    mutable std::mutex mutex_;
    std::condition_variable idle_cv_;
    std::map<std::string, RuleLanes> rules_;
    std::map<std::thread::id, std::thread> threads_;
    std::vector<std::thread::id> finished_;  // lane threads that returned, to join
    std::size_t busy_ = 0;                   // jobs queued or running
    // Deferred deliveries in memory only (not durable) without a final result.
    std::size_t deferred_ = 0;
    // Per "<hook>\n<idempotency key>": the deferred reports made whose final result has
    // not come (their `durable`, oldest first), and final results that came before their
    // deferred report (held back so the callback always sees "spooled" first).
    std::map<std::string, std::deque<bool>> announced_;
    std::multimap<std::string, std::pair<BreachEvent, HookResult>> early_;
    std::uint64_t dropped_ = 0;
    bool stopping_ = false;
    std::mutex callback_mutex_;     // held while a final result is reported
    bool callbacks_closed_ = false;  // after stop(): final results are not reported
};

/// The HookStep status of a result: "ok", "failed", "skipped" for a RunIf skip, or
/// "spooled" for a deferred delivery (HookResult::deferred).
std::string stepStatus(const HookResult& result);

}  // namespace rollguard::agent
