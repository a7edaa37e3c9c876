#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "rollguard/agent/log_format.h"
#include "rollguard/agent/proc_metrics.h"
#include "rollguard/rules/diagnostics.h"
#include "rollguard/rules/rule.h"
#include "rollguard/rules/selection.h"

namespace rollguard::agent {

using rules::Diagnostic;
using rules::Diagnostics;
using rules::SourceLocation;

/// Which hooks' preflight decides /readyz ([agent] readiness_preflight).
enum class ReadinessPreflight {
    Critical,  ///< the hooks of critical rules and the [rollout] hooks: those that roll back
    All,       ///< every hook
    Off,       ///< none: the preflight is reported, never gates readiness
};
const char* toString(ReadinessPreflight r);  ///< "critical", "all", "off"

struct AgentSettings;
/// The evaluation interval in effect: `evaluation_interval` when set, else the longest
/// interval of at most 100 ms that divides `tick` evenly (the tick itself when it is 100 ms
/// or shorter): 100 ms for the default tick of 1 s.
std::chrono::nanoseconds evaluationInterval(const AgentSettings& agent);

/// [agent]
struct AgentSettings {
    /// The judge's step: what one M-of-N entry, one learned-baseline sample and one
    /// event-time group stand for; also how often the status snapshot and the rollout are
    /// looked at (the checkpoint at every evaluation, per checkpoint_interval).
    std::chrono::nanoseconds tick{std::chrono::seconds{1}};
    /// How often rules are evaluated (a divisor of `tick`); empty: evaluationInterval()'s
    /// default.
    std::optional<std::chrono::nanoseconds> evaluation_interval;
    std::string state_dir;                 ///< empty: no state persisted
    /// How often sources' read positions and windows are checkpointed into state_dir
    /// (also on shutdown).
    std::chrono::nanoseconds checkpoint_interval{std::chrono::seconds{1}};
    std::string listen = "127.0.0.1:9464"; ///< HTTP listener for /metrics; "" disables it
    std::string log_level = "info";        ///< trace, debug, info, warn, error; re-applied on reload
    /// "text" (default) or "json" (one JSON object per line on stderr); re-applied on reload.
    LogFormat log_format = LogFormat::Text;
    std::string hostname;                  ///< reported in hook payloads; empty: gethostname()
    bool dry_run = false;                  ///< log hooks instead of running them
    /// How receivers reach this agent, e.g. "http://host:9464": hook payloads link to
    /// `<external_url>/api/v1/status`. Empty: no links.
    std::string external_url;
    /// Completed incident records kept in `<state_dir>/incidents/` (oldest deleted first).
    std::size_t max_incidents = 100;
    /// Raw log lines of the rule's source saved in an incident record.
    std::size_t incident_log_lines = 20;
    /// Bearer token file for the admin API (POST /api/v1/rollback, /api/v1/rearm).
    /// Empty: the admin API is disabled (403).
    std::string admin_token_file;
    /// How often every hook's preflight (preflightHook) runs again after the one at start
    /// (and on reload), off the tick thread. 0: only at start and on reload.
    std::chrono::nanoseconds preflight_interval{std::chrono::minutes{1}};
    /// Whose failed preflight makes /readyz (and the gate) answer 503.
    ReadinessPreflight readiness_preflight = ReadinessPreflight::Critical;
};

enum class LatencyUnit { Nanoseconds, Microseconds, Milliseconds, Seconds };

/// Where a log line's latency is and in what unit. A string value such as "12.5ms" is
/// parsed as a duration and its own unit wins over `unit`.
struct LatencyField {
    std::string field;  ///< dotted path into the JSON object, e.g. "http.duration_ms"
    LatencyUnit unit = LatencyUnit::Milliseconds;
    /// Alternatively (when `field` is empty): latency = end - start, two timestamp fields
    /// (RFC 3339 strings, or epoch numbers in `timestamp_unit`).
    std::string start_field;
    std::string end_field;
    LatencyUnit timestamp_unit = LatencyUnit::Seconds;  ///< unit of numeric epoch timestamps
    SourceLocation location;
    /// How the store keeps these latencies: integer units of `resolution`, up to
    /// `highest` (larger values are clamped and counted), at `significant_figures`.
    std::chrono::nanoseconds resolution{std::chrono::microseconds{1}};
    std::chrono::nanoseconds highest{std::chrono::hours{1}};
    int significant_figures = 3;
};

/// When is a line an error: one test on one field, or all/any of several predicates.
struct ErrorPredicate {
    enum class Kind {
        None,           ///< no line is an error
        NumberAtLeast,  ///< numeric field >= gte (e.g. status >= 500); numeric strings count
        NumberInRanges, ///< numeric field in one of the inclusive `ranges` (e.g. [[500, 599], [429, 429]])
        StringIn,       ///< string field is one of `in` (e.g. level in ["error","fatal"])
        IsTrue,         ///< boolean field is true
        Present,        ///< the field exists and is not null (e.g. an "exception" object)
        All,            ///< every predicate in `terms` holds
        Any,            ///< at least one predicate in `terms` holds
    };
    Kind kind = Kind::None;
    std::string field;  ///< dotted path
    double gte = 0.0;
    std::vector<std::pair<double, double>> ranges;
    std::vector<std::string> in;
    std::vector<ErrorPredicate> terms;  ///< for All / Any
    SourceLocation location;
};

/// How a source notices new data: inotify with a periodic stat/rescan as a safety net, or
/// the periodic poll alone (NFS, some overlay filesystems, inotify limits).
enum class WatchMode { Auto, Poll };

enum class ReadFrom { Beginning, End };

/// Which time a line's event is counted at: when the tailer read it, or the time the
/// line itself carries (`timestamp`).
enum class TimeMode { Arrival, Event };

/// One label of a source: its name and the dotted field path its value comes from.
struct LabelField {
    std::string name;   ///< [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"
    std::string field;  ///< dotted path, e.g. "http.route"
};

/// [[source]] type = "json_log": follows JSON-lines files.
struct LogSourceConfig {
    std::string name;
    std::vector<std::string> paths;  ///< glob patterns (*, ?, [..], ** for any depth); re-scanned on a poll
    std::vector<std::string> exclude;  ///< glob patterns; a matching path is never followed
    WatchMode watch = WatchMode::Auto;
    /// How long a file that was rotated away (renamed or deleted) is still read for
    /// lines its writer appends late, before it is closed.
    std::chrono::nanoseconds rotate_wait{std::chrono::seconds{5}};
    ReadFrom read_from = ReadFrom::End;  ///< for files present at start; files found later start at 0
    std::optional<LatencyField> latency;
    ErrorPredicate error;
    std::size_t max_line_bytes = 64 * 1024;  ///< longer lines are skipped and counted
    std::chrono::nanoseconds poll_interval{std::chrono::seconds{1}};  ///< rescan/stat safety net
    /// `labels = { route = "http.route" }`, sorted by name. A value is a string as is, a
    /// number as its JSON text, true/false as "true"/"false"; missing, null, objects and
    /// arrays are "" (absent); a value longer than 128 bytes is "__other__".
    std::vector<LabelField> labels;
    /// Distinct label-value tuples (label sets) kept per source; further tuples map to
    /// the overflow set (every value "__other__"), counted in `label_overflow`.
    std::size_t max_label_sets = 100;
    TimeMode time = TimeMode::Arrival;
    /// With time = Event: the dotted path of the event timestamp (RFC 3339 string, or an
    /// epoch number or numeric string in `timestamp_unit`).
    std::string timestamp;
    LatencyUnit timestamp_unit = LatencyUnit::Seconds;
    /// With time = Event: data whose time bucket ended more than this before now is
    /// dropped and counted (`too_late`).
    std::chrono::nanoseconds lateness{std::chrono::seconds{30}};
    SourceLocation location;
};

/// The kinds of scrape source (everything but json_log): sources that are read on an
/// interval rather than followed.
enum class ScrapeType {
    Prometheus,  ///< a Prometheus text / OpenMetrics endpoint
    Json,        ///< a JSON document over HTTP, or a local JSON file
    Health,      ///< an HTTP check: status code set, optional body match, latency
    Process,     ///< RSS, CPU%, fds and threads of processes, from /proc
    Promql,      ///< instant queries against a Prometheus-compatible HTTP API
};
const char* toString(ScrapeType t);

/// A series selector as written in PromQL: `metric{label="v", label!="v", label=~"re",
/// label!~"re"}` (regexes anchored, as in Prometheus). For json sources `metric` is a
/// JSON Pointer (RFC 6901) such as "/latency/p95_ms" and there are no matchers.
struct SeriesSelector {
    std::string metric;
    std::vector<rules::LabelMatcher> matchers;
    std::string text;  ///< as written, for messages

    /// True when every matcher accepts the label set; `value_of(name)` returns a label's
    /// value as a std::string_view ("" when missing).
    template <typename ValueOf>
    bool matches(ValueOf&& value_of) const {
        for (const auto& m : matchers) {
            if (!m.matches(value_of(m.label))) {
                return false;
            }
        }
        return true;
    }
};

/// One named series of a scrape source: what is read on every scrape and how it
/// becomes store data. Rules read it as source "<source name>.<series name>".
///
///  - Gauge: the value as read (summed over the matching series) -> a value series
///    (metrics value, increase, growth, rate; `min`/`max`-style events metrics do not
///    apply).
///  - Counter: a monotonic counter -> its increase since the previous scrape (resets
///    detected per series, as Prometheus' increase() does) -> a value series.
///  - Events: a counter of events (`selector`) and optionally a counter of the failed
///    ones (`errors`) -> an event series: each scrape adds the increases as events and
///    errors (metrics count, rate, error_ratio).
///  - Histogram: a classic histogram `<metric>_bucket{le=...}` -> an event series with
///    latency: each scrape adds the increase of every bucket as events spread evenly
///    inside the bucket (the assumption histogram_quantile makes), so window quantiles
///    are what histogram_quantile over the window's increase gives; observations above
///    `errors_above` count as errors.
///  - Query (promql sources): the instant query's result -> a value series.
struct ScrapeSeriesConfig {
    enum class Kind { Gauge, Counter, Events, Histogram, Query };
    std::string name;  ///< [a-zA-Z_][a-zA-Z0-9_]*; "up" and "checks" are reserved
    Kind kind = Kind::Gauge;
    SeriesSelector selector;               ///< all kinds but Query
    std::optional<SeriesSelector> errors;  ///< Events only
    /// Histogram only, in seconds (after `scale`): observations in buckets above the
    /// largest `le` <= this count as errors (a bound that is not a bucket boundary rounds
    /// down, counting more as errors, never fewer).
    std::optional<double> errors_above;
    std::string query;  ///< Query only: the PromQL expression
    /// Multiplier from the source's unit to the stored unit: `unit = "ms"` gives 0.001,
    /// so latencies and durations are stored in seconds. Default 1.
    double scale = 1.0;
    /// Labels kept from the scraped series (or query result), in config order. Each
    /// distinct tuple of their values is a label set that rules can select and group by;
    /// without `by` everything is summed into one series.
    std::vector<std::string> by;
    std::size_t max_label_sets = 100;  ///< further tuples map to "__other__"
    SourceLocation location;

    /// Value series (Gauge, Counter, Query) carry values; the others carry events.
    bool isValue() const { return kind == Kind::Gauge || kind == Kind::Counter || kind == Kind::Query; }
};

/// [[source]] with type = prometheus | json | health | process | promql.
struct ScrapeSourceConfig {
    std::string name;
    ScrapeType type = ScrapeType::Prometheus;
    /// prometheus / json / health: the URL fetched; promql: the API base URL (queries go
    /// to `<url>/api/v1/query`). http:// or https:// only.
    std::string url;
    std::string path;  ///< json only, instead of url: a local JSON file read on every scrape
    std::chrono::nanoseconds interval{std::chrono::seconds{5}};
    /// Whole-request deadline; default min(interval, 10s); never above the interval.
    std::chrono::nanoseconds timeout{std::chrono::seconds{5}};
    /// Scrape at a stable offset within the interval, derived from the URL and host
    /// name, so that many sidecars do not hit a server at the same instant.
    bool jitter = true;
    std::size_t max_bytes = 10 * 1024 * 1024;  ///< response body cap (after gzip); 0 = none
    std::vector<std::pair<std::string, std::string>> headers;
    // Secrets are read from files or the environment, never the TOML itself.
    std::string bearer_token_file;
    std::string bearer_token_env;
    std::string basic_username;
    std::string basic_password_file;
    std::string basic_password_env;
    std::string ca_file;    ///< TLS: CA bundle to verify the server with (empty: system store)
    std::string cert_file;  ///< TLS client certificate (PEM), with key_file
    std::string key_file;
    bool insecure_skip_verify = false;
    /// prometheus / json / promql: the series read on every scrape, in config order.
    std::vector<ScrapeSeriesConfig> series;
    /// health: accepted status codes as inclusive ranges ("2xx" = 200..299); empty:
    /// 200..299.
    std::vector<std::pair<int, int>> status;
    std::string body_contains;  ///< health: the body must contain this text ("" = no check)
    ProcessSelector process;    ///< process: which processes
    SourceLocation location;
};

/// One series a rule can read from a scrape source, as the store keeps it.
struct ScrapeStream {
    std::string name;  ///< "<source>.<series>", e.g. "api.up"
    bool values = false;       ///< a value series (gauge-like) rather than an event series
    bool has_latency = false;  ///< event series with latency (histograms, health checks)
    std::vector<std::string> labels;  ///< label names of its label sets (`by`)
    std::size_t max_label_sets = 100;
};

/// The series a scrape source provides, in a fixed order: its configured `series`, then
/// the built-in ones:
///  - every URL-based source (prometheus, json with url, health, promql): "up" (1 when
///    the last scrape succeeded, else 0);
///  - health: "checks" (one event per check, an error when it failed, latency = the
///    response time);
///  - process: "rss_bytes", "cpu_percent" (100 = one core), "open_fds", "threads",
///    "processes" (how many processes the selector matched).
std::vector<ScrapeStream> scrapeStreams(const ScrapeSourceConfig& source);

enum class HookType { EnvFile, Webhook, Script, Alertmanager, JsonFile, TomlFile };
const char* toString(HookType t);
/// Whether a hook of this type notifies (webhook, alertmanager) rather than acts (env,
/// json and toml file edits, scripts: the rollback). A critical rule's resolve runs its
/// notifying hooks only (RuleSpec::resolve_hooks).
bool notifies(HookType t);

/// The body a webhook hook sends (see makeHook in hooks.h for each shape).
enum class WebhookFormat { Json, Alertmanager, Slack, PagerDuty };
const char* toString(WebhookFormat f);

/// When a hook of a rule's list runs, judged on the hooks before it in the same run.
enum class RunIf {
    Always,          ///< default: a rollback tries every step
    PreviousOk,      ///< only when no earlier step failed ("then": restart only after the rewrite worked)
    PreviousFailed,  ///< only when an earlier step failed (escalate)
};
const char* toString(RunIf r);

/// A value a json_file / toml_file hook writes, with the TOML type it was written with
/// in the config: boolean, integer, float or string.
using FlagValue = std::variant<bool, std::int64_t, double, std::string>;

/// One `set` entry of a json_file / toml_file hook.
struct FlagSetting {
    /// A JSON Pointer (RFC 6901): "/flags/phase_4/enabled"; "~1" stands for '/' and
    /// "~0" for '~' inside a segment. Validated by the loader (starts with '/').
    std::string pointer;
    FlagValue value;
};

/// One `append` entry of a json_file hook: an element appended to the array at
/// `pointer` unless an equal element is already in it. String values may hold the
/// {{placeholders}} of renderBodyTemplate, filled from the event when the hook runs.
struct FlagAppend {
    /// A JSON Pointer naming the array itself ("/history"), validated by the loader.
    std::string pointer;
    /// true: the element is an object of `fields` (config order); false: it is `value`.
    bool is_object = false;
    FlagValue value;
    std::vector<std::pair<std::string, FlagValue>> fields;
};

/// [[hook]]
struct HookConfig {
    std::string name;
    HookType type = HookType::Webhook;
    std::chrono::nanoseconds timeout{std::chrono::seconds{10}};
    RunIf run_if = RunIf::Always;
    SourceLocation location;

    // env_file, json_file and toml_file
    std::string path;
    std::vector<std::pair<std::string, std::string>> set;  ///< env_file: in config order
    /// env_file: variable names; json_file / toml_file: JSON Pointers.
    std::vector<std::string> unset;
    bool create = false;  ///< create the file if missing (mode 0600)
    bool backup = true;   ///< keep the previous version as `<path>.rollguard.bak`
    /// A symlink at `path`: false (default) refuses it; true edits its target (resolved
    /// once, then opened with O_NOFOLLOW: a link swapped in later is never followed).
    bool follow_symlinks = false;

    // json_file and toml_file: the values to set, in config order
    std::vector<FlagSetting> flag_set;
    /// json_file only: elements to append to arrays, in config order (after set/unset).
    std::vector<FlagAppend> flag_append;

    // webhook
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    /// Extra attempts after the first, with exponential backoff (webhook, alertmanager
    /// and script hooks). The loader sets 0 for scripts unless configured: a script is
    /// not idempotent in general.
    int retries = 3;
    std::chrono::nanoseconds retry_backoff{std::chrono::milliseconds{500}};  ///< backoff base
    WebhookFormat format = WebhookFormat::Json;
    /// Replaces the formatted body when set: {{placeholders}} (see renderBodyTemplate).
    std::string body_template;
    /// Secrets are never in the TOML: each is read from a file or an environment
    /// variable when the hook is built (trailing whitespace trimmed).
    std::string bearer_token_file;  ///< `Authorization: Bearer <token>`
    std::string bearer_token_env;
    std::string secret_file;        ///< HMAC-SHA256 signing key (X-Rollguard-Signature)
    std::string routing_key_file;   ///< pagerduty format: the Events API v2 routing key
    std::string routing_key_env;
    std::size_t spool_max_entries = 1000;  ///< per hook; the oldest is dropped beyond it
    /// Cap of the spool worker's (jittered, exponential) backoff between retries.
    std::chrono::nanoseconds spool_max_backoff{std::chrono::minutes{5}};

    // alertmanager (url is the Alertmanager base URL, e.g. "http://am:9093")
    std::chrono::nanoseconds resend_interval{std::chrono::minutes{1}};  ///< while firing

    // copied from [agent] by the loader so that a hook is built from its config alone
    std::string state_dir;     ///< webhook spool: `<state_dir>/spool/`; empty: no spool
    std::string external_url;  ///< links in payloads (status_url, generatorURL, externalURL)

    // script
    std::vector<std::string> command;  ///< argv; command[0] is an absolute or relative path
    std::vector<std::pair<std::string, std::string>> env;  ///< extra environment (wins)
    /// Names of agent environment variables the script also gets (when set); the rest of
    /// the agent's environment is not passed on (see makeHook).
    std::vector<std::string> inherit_env;
    std::string workdir;  ///< working directory of the script; empty: the agent's
    std::string user;     ///< run as this user (name); empty: the agent's user
    std::string group;    ///< run with this group (name); empty: the user's primary group
};

/// The placeholder through which [rollout] hooks carry the rollout's percentage.
inline constexpr std::string_view kRolloutPercentPlaceholder = "{{rollout_percent}}";

/// Whether the hook's values use {{rollout_percent}}: env_file / json_file / toml_file
/// `set` values, script `env` values and command arguments (after command[0]). Such a
/// hook only works for [rollout] events (a rule's event has no percentage). A webhook's
/// body_template does not count: there the placeholder renders empty without one.
bool usesRolloutPercent(const HookConfig& hook);

/// A whole, validated configuration. A value type: built once by the loader, never
/// carried as strings downstream.
/// [rollout]: the optional progressive rollout controller (agent/src/rollout). It steps
/// the rollout's traffic percentage through `stages`, holding each stage until the gate
/// rules have stayed quiet for the stage's hold, and steps it back when a gate rule of
/// severity critical fires. The percentage reaches the service through `hooks`, whose
/// values may contain the placeholder `{{rollout_percent}}`.
struct RolloutConfig {
    enum class OnCritical { Zero, Previous };
    /// Traffic percentages, strictly increasing, each 1..100, e.g. {5, 25, 50, 100}.
    std::vector<int> stages;
    /// How long each stage is held (one per stage; a single `hold` is repeated).
    std::vector<std::chrono::nanoseconds> hold;
    /// Rules that must stay quiet (neither pending nor firing) for a whole hold; empty:
    /// every rule. Critical ones among them roll the rollout back when they fire.
    std::vector<std::string> gate;
    /// Stage percentages whose promotion *into* waits for `rollguard rollout promote`
    /// once the hold is done (`manual_gate = true`: every stage after the first).
    std::vector<int> manual_gate;
    OnCritical on_critical = OnCritical::Zero;
    /// After a rollback: no new promotion before this much time has passed.
    std::chrono::nanoseconds cooldown{std::chrono::minutes{10}};
    /// Rollbacks after which the rollout stops as `failed` until `resume` (0: no limit).
    int max_rollbacks = 3;
    /// Hooks run on every percentage change (start, promote, rollback, abort), in order,
    /// with the new percentage in `{{rollout_percent}}`.
    std::vector<std::string> hooks;
    /// Hooks run after `hooks` on a rollback or an abort (notifications, scripts).
    std::vector<std::string> rollback_hooks;
    SourceLocation location;  ///< of the [rollout] header
};

struct Config {
    std::string path;  ///< file it came from
    AgentSettings agent;
    std::vector<LogSourceConfig> sources;
    /// Scrape sources ([[source]] of the other types), in config order.
    std::vector<ScrapeSourceConfig> scrapes;
    std::vector<rules::RuleSpec> rules;
    std::vector<HookConfig> hooks;
    std::optional<RolloutConfig> rollout;  ///< nullopt: no [rollout] section

    const LogSourceConfig* findSource(std::string_view name) const;
    const ScrapeSourceConfig* findScrape(std::string_view name) const;
    const HookConfig* findHook(std::string_view name) const;
};

/// The outcome of loading: a config when there were no errors, and every diagnostic
/// (errors and warnings), each with file:line:col.
struct LoadResult {
    std::optional<Config> config;
    Diagnostics diagnostics;

    bool ok() const { return config.has_value(); }
};

/// Parses and validates TOML text. `path` is used in diagnostics and to resolve
/// relative paths in the config (relative to the config file's directory).
/// Never throws on bad input: every problem becomes a diagnostic.
LoadResult parseConfig(std::string_view text, const std::string& path);

/// Divides the config's timings by `factor` (> 0), so that a scenario written with
/// production durations plays out `factor` times faster (`rollguard run --time-scale`,
/// for tests and rehearsals only). Scaled: every rule's window, for, keep_firing_for,
/// delay, repeat_interval and learned-baseline time; the rollout's holds and cooldown;
/// log sources' lateness, and scrape sources' interval and timeout (never below 100 ms).
/// Not scaled: the tick, hook timeouts and retry backoffs, and `growth`, which stays a
/// change per real hour.
void scaleTimings(Config& config, double factor);

/// Reads `path` and calls parseConfig. A missing or unreadable file is a diagnostic.
LoadResult loadConfigFile(const std::string& path);

}  // namespace rollguard::agent
