// webhook hook: POSTs the breach in the configured format with libcurl, signed, with an
// idempotency key, retrying transient failures with jittered backoff and keeping
// undelivered notifications in an on-disk spool until the receiver takes them.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <curl/curl.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hooks/hooks_internal.h"
#include "hooks/http_post.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_writer.h"
#include "util/atomic_file.h"

namespace rollguard::agent {
namespace {

namespace fs = std::filesystem;


std::int64_t unixMillis(rules::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string lowerText(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

/// One undelivered notification as it sits in the spool. The URL and headers are not
/// stored: they come from the config when it is sent, so a fixed URL or a rotated
/// token applies to old entries too.
struct SpoolEntry {
    std::string key;
    std::string body;
    int attempts = 0;
    std::int64_t created_ms = 0;
    std::int64_t next_attempt_ms = 0;
    std::uint64_t seq = 0;  // creation order within this process, ties of created_ms
    /// Not stored: the events of runs that returned `deferred` and wait for this
    /// delivery's outcome (empty for an entry reloaded from the spool).
    std::vector<BreachEvent> waiting;
};

/// Events to complete with one result, once the hook's mutex is released.
struct Completions {
    std::vector<BreachEvent> events;
    HookResult result;
};

std::string spoolRecord(const std::string& hook, const SpoolEntry& e) {
    JsonWriter w;
    w.beginObject();
    w.key("hook").value(hook);
    w.key("key").value(e.key);
    w.key("attempts").value(e.attempts);
    w.key("created_ms").value(e.created_ms);
    w.key("next_attempt_ms").value(e.next_attempt_ms);
    w.key("body").value(e.body);
    w.endObject();
    return w.str();
}

bool parseSpoolRecord(const std::string& text, const std::string& hook, SpoolEntry& e) {
    simdjson::ondemand::parser parser;
    simdjson::padded_string padded(text);
    simdjson::ondemand::document doc;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) {
        return false;
    }
    std::string_view sv;
    std::int64_t n = 0;
    if (doc["hook"].get_string().get(sv) != simdjson::SUCCESS || sv != hook) {
        return false;
    }
    if (doc["key"].get_string().get(sv) != simdjson::SUCCESS || sv.empty()) {
        return false;
    }
    e.key = std::string(sv);
    if (doc["attempts"].get_int64().get(n) != simdjson::SUCCESS) {
        return false;
    }
    e.attempts = static_cast<int>(std::clamp<std::int64_t>(n, 0, 1'000'000));
    if (doc["created_ms"].get_int64().get(e.created_ms) != simdjson::SUCCESS ||
        doc["next_attempt_ms"].get_int64().get(e.next_attempt_ms) != simdjson::SUCCESS) {
        return false;
    }
    if (doc["body"].get_string().get(sv) != simdjson::SUCCESS) {
        return false;
    }
    e.body = std::string(sv);
    return true;
}

/// One webhook: owns its config, the secrets read at construction, its undelivered
/// entries (in memory, and with a state_dir in `<state_dir>/spool/<name>.<key>.json`)
/// and the delivery thread that retries them.
///
/// run() makes the first attempt itself and returns; when that attempt fails in a way a
/// retry may heal, the entry goes to the delivery thread and run() returns `deferred`,
/// so the steps after a webhook wait at most one attempt's timeout. The thread makes the
/// remaining `retries` attempts (backoffDelay(n, retry_backoff, 60 s)) and, with a spool,
/// goes on with backoffDelay(n, retry_backoff, spool_max_backoff) until delivered or
/// rejected; without a spool it gives up after the retries. The final result reaches the
/// waiting runs through complete().
/// Thread-safety: run() from any thread, concurrently; counters() from any thread; the
/// delivery thread shares entries_, in_flight_ and counters_ under mutex_; complete()
/// is never called with mutex_ held.
class WebhookHook final : public Hook {
public:
    WebhookHook(HookConfig config, HookEnvironment environment)
        : config_(std::move(config)), env_(detail::completeEnvironment(std::move(environment))) {
        setUp();
        if (!spool_dir_.empty()) {
            loadSpool();
        }
        worker_ = std::thread([this] { spoolLoop(); });
    }

    ~WebhookHook() override {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
            if (spool_dir_.empty() && !entries_.empty()) {
                spdlog::warn("hook {}: stopping with {} undelivered notification(s) (no state_dir: no spool keeps them)",
                             config_.name, entries_.size());
            }
        }
        cv_.notify_all();
        if (worker_.joinable()) {
            worker_.join();
        }
    }

    WebhookHook(const WebhookHook&) = delete;
    WebhookHook& operator=(const WebhookHook&) = delete;

    const std::string& name() const override { return config_.name; }
    HookType type() const override { return HookType::Webhook; }

    HookCounters counters() const override {
        std::lock_guard lock(mutex_);
        HookCounters c = counters_;
        c.spool_pending = entries_.size();
        return c;
    }

    HookResult run(const BreachEvent& event) override {
        const auto start = std::chrono::steady_clock::now();
        HookResult result;
        result.attempts = 0;
        if (!setup_error_.empty()) {
            result.message = setup_error_;
            result.duration = detail::elapsedSince(start);
            return result;
        }
        const std::string body = renderBody(event);
        const std::string key = idempotencyKey(event, config_.name);
        if (auto done = takeOverReloaded(key)) {
            result.ok = true;
            result.message = *done;
            result.duration = detail::elapsedSince(start);
            return result;
        }

        SpoolEntry entry;
        entry.key = key;
        entry.body = body;
        entry.created_ms = unixMillis(env_.clock->now());
        // Written before the first attempt: a crash or kill mid-delivery leaves it here.
        // The delivery thread leaves it alone while this call owns it (in_flight_).
        entry.next_attempt_ms = entry.created_ms;
        spoolAdd(std::move(entry), /*in_flight=*/true);

        const detail::PostOutcome out = postOnce(body, key);
        result.attempts = 1;
        result.ok = out.ok;
        result.message = out.message;
        if (out.permanent) {
            result.message += " (not retried)";
        }
        std::optional<Completions> done;
        {
            std::lock_guard lock(mutex_);
            unmarkLocked(key);
            auto it = entries_.find(key);
            if (out.ok || out.permanent || it == entries_.end() || (config_.retries == 0 && spool_dir_.empty())) {
                done = finishLocked(key, result);
            } else {
                it->second.attempts = 1;
                it->second.next_attempt_ms = unixMillis(env_.clock->now()) + millis(retryDelay(0));
                it->second.waiting.push_back(event);
                persistLocked(it->second);
                result.deferred = true;
                result.durable = !spool_dir_.empty();
                if (!spool_dir_.empty()) {
                    ++counters_.spooled;
                    result.message += "; spooled, retrying in the background";
                } else {
                    result.message += "; retrying in the background (" + std::to_string(config_.retries) +
                                      " more attempt(s))";
                }
            }
        }
        cv_.notify_all();
        if (done) {
            completeAll(*done);
        }
        result.duration = detail::elapsedSince(start);
        return result;
    }

private:
    /// A restart both reloads the spool (sent at once by the worker) and resumes the
    /// interrupted rollback, which runs this hook again with the same event: without
    /// this, the receiver would get the notification twice in the new process. For a key
    /// reloaded from the spool: waits while the worker is sending it, and when the worker
    /// has delivered it returns the message of a run that needs no request. Each reloaded
    /// key is handled once; later runs with that key send as usual.
    std::optional<std::string> takeOverReloaded(const std::string& key) {
        std::unique_lock lock(mutex_);
        auto it = reloaded_.find(key);
        if (it == reloaded_.end()) {
            return std::nullopt;
        }
        cv_.wait(lock, [&] { return worker_key_ != key || stopping_; });
        it = reloaded_.find(key);
        const bool delivered = it != reloaded_.end() && it->second;
        reloaded_.erase(key);
        if (!delivered) {
            return std::nullopt;  // still pending: this run sends it (the worker leaves it alone)
        }
        return "already delivered from the spool after the restart (Idempotency-Key " + key.substr(0, 16) + "...)";
    }

    void setUp() {
        std::vector<std::string> headers;
        bool has_content_type = false;
        bool json_content = true;
        for (const auto& [hname, value] : config_.headers) {
            // CR/LF in a header would let a config smuggle extra headers or a body.
            if (hname.empty() || hname.find_first_of(":\r\n") != std::string::npos ||
                value.find_first_of("\r\n") != std::string::npos) {
                setup_error_ = "invalid header '" + hname + "'";
                return;
            }
            if (lowerText(hname) == "content-type") {
                has_content_type = true;
                json_content = lowerText(value).find("json") != std::string::npos;
            }
            headers.push_back(hname + ": " + value);
        }
        if (!has_content_type) {
            headers.emplace_back("Content-Type: application/json");
        }
        template_json_ = json_content;
        if (!config_.bearer_token_file.empty() || !config_.bearer_token_env.empty()) {
            std::string token;
            if (!detail::readSecret(config_.bearer_token_file, config_.bearer_token_env, "bearer token", token,
                                    setup_error_)) {
                return;
            }
            headers.push_back("Authorization: Bearer " + token);
        }
        if (!config_.secret_file.empty() &&
            !detail::readSecret(config_.secret_file, {}, "signing secret", secret_, setup_error_)) {
            return;
        }
        if (config_.format == WebhookFormat::PagerDuty && config_.body_template.empty()) {
            if (!detail::readSecret(config_.routing_key_file, config_.routing_key_env, "routing key",
                                    context_.routing_key, setup_error_)) {
                return;
            }
        }
        context_.hook_name = config_.name;
        context_.external_url = config_.external_url;
        base_headers_ = std::move(headers);

        if (!config_.state_dir.empty()) {
            const fs::path dir = fs::path(config_.state_dir) / "spool";
            std::error_code ec;
            fs::create_directories(dir, ec);
            if (ec) {
                spdlog::error("hook {}: cannot create spool directory {}: {}; undelivered notifications will be lost",
                              config_.name, dir.string(), ec.message());
                return;
            }
            ::chmod(dir.c_str(), 0700);
            spool_dir_ = dir.string();
        }
    }

    std::string renderBody(const BreachEvent& event) const {
        if (!config_.body_template.empty()) {
            return renderBodyTemplate(config_.body_template, event, context_, template_json_);
        }
        return renderWebhookBody(config_.format, event, context_);
    }

    std::vector<std::string> headersFor(const std::string& body, const std::string& key) const {
        std::vector<std::string> headers = base_headers_;
        headers.push_back("Idempotency-Key: " + key);
        if (!secret_.empty()) {
            const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                                   env_.clock->now().time_since_epoch())
                                   .count();
            headers.push_back("X-Rollguard-Timestamp: " + std::to_string(now_s));
            headers.push_back("X-Rollguard-Signature: " + webhookSignature(secret_, now_s, body));
        }
        return headers;
    }

    detail::PostOutcome postOnce(const std::string& body, const std::string& key) const {
        return detail::httpPost(config_.url, headersFor(body, key), body, config_.timeout);
    }

    /// The pause before retry `retry` (0 for the first retry): within the configured
    /// `retries` capped at 60 s, beyond them (the spool) at spool_max_backoff.
    std::chrono::nanoseconds retryDelay(int retry) const {
        const auto cap = retry < config_.retries ? detail::kMaxRetryBackoff : config_.spool_max_backoff;
        return backoffDelay(std::min(retry, 30), config_.retry_backoff, cap, env_.random01());
    }

    static std::int64_t millis(std::chrono::nanoseconds d) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    }

    /// Removes the entry (memory and spool file); the runs waiting for it are returned
    /// to be completed with `result` once mutex_ is released.
    std::optional<Completions> finishLocked(const std::string& key, const HookResult& result) {
        auto it = entries_.find(key);
        if (it == entries_.end()) {
            return std::nullopt;
        }
        Completions done{std::move(it->second.waiting), result};
        removeFileLocked(key);
        entries_.erase(it);
        if (done.events.empty()) {
            return std::nullopt;
        }
        return done;
    }

    void completeAll(const Completions& done) const {
        for (const auto& event : done.events) {
            complete(event, done.result);
        }
    }

    // ---- spool -------------------------------------------------------------------

    std::string pathFor(const std::string& key) const {
        return spool_dir_ + "/" + config_.name + "." + key + ".json";
    }

    /// Writes the entry's spool file. A failure (disk full, read-only state_dir) is
    /// counted every time but logged once per run of failures, with a line when writes
    /// work again: the entry stays in memory and is still delivered, it is only not
    /// crash-safe meanwhile.
    void persistLocked(const SpoolEntry& e) {
        if (spool_dir_.empty()) {
            return;  // no state_dir: the entry lives in memory only
        }
        if (auto err = writeFileAtomically(pathFor(e.key), spoolRecord(config_.name, e), 0600)) {
            if (counters_.spool_write_failing == 0) {
                spdlog::error("hook {}: cannot write spool entry {}: {} (kept in memory; not logged again until "
                              "spool writes work again)",
                              config_.name, e.key, *err);
            }
            counters_.spool_write_failing = 1;
            ++counters_.spool_write_failures;
            return;
        }
        if (counters_.spool_write_failing != 0) {
            spdlog::info("hook {}: spool writes work again ({} failed in all)", config_.name,
                         counters_.spool_write_failures);
            counters_.spool_write_failing = 0;
        }
    }

    /// Adds (or replaces) an entry, dropping the oldest beyond the bound. False when
    /// it cannot be kept.
    /// Adds an entry, or replaces the one with its key (keeping the runs that wait for
    /// it), dropping the oldest beyond spool_max_entries.
    void spoolAdd(SpoolEntry entry, bool in_flight) {
        std::vector<Completions> dropped;
        {
            std::lock_guard lock(mutex_);
            entry.seq = next_seq_++;
            const std::string key = entry.key;
            if (auto it = entries_.find(key); it != entries_.end()) {
                entry.waiting = std::move(it->second.waiting);
            } else {
                while (!entries_.empty() &&
                       entries_.size() >= std::max<std::size_t>(config_.spool_max_entries, 1)) {
                    if (auto done = dropOldestLocked()) {
                        dropped.push_back(std::move(*done));
                    }
                }
            }
            persistLocked(entry);
            entries_[key] = std::move(entry);
            if (in_flight) {
                in_flight_.insert(key);
            }
        }
        for (const auto& done : dropped) {
            completeAll(done);
        }
    }

    std::optional<Completions> dropOldestLocked() {
        auto oldest = entries_.end();
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if (oldest == entries_.end() ||
                std::pair(it->second.created_ms, it->second.seq) < std::pair(oldest->second.created_ms, oldest->second.seq)) {
                oldest = it;
            }
        }
        if (oldest == entries_.end()) {
            return std::nullopt;
        }
        spdlog::warn("hook {}: spool full ({} entries): dropping the oldest notification {} ({} attempts)",
                     config_.name, config_.spool_max_entries, oldest->first, oldest->second.attempts);
        ++counters_.spool_dropped;
        const std::string key = oldest->first;
        in_flight_.erase(key);
        HookResult result;
        result.attempts = oldest->second.attempts;
        result.message = "dropped undelivered: the spool is full (" + std::to_string(config_.spool_max_entries) +
                         " entries)";
        return finishLocked(key, result);
    }

    void removeFileLocked(const std::string& key) const {
        if (!spool_dir_.empty()) {
            std::error_code ec;
            fs::remove(pathFor(key), ec);
        }
    }

    void unmarkLocked(const std::string& key) {
        auto it = in_flight_.find(key);
        if (it != in_flight_.end()) {
            in_flight_.erase(it);
        }
    }

    void loadSpool() {
        const std::string prefix = config_.name + ".";
        std::vector<SpoolEntry> loaded;
        std::error_code ec;
        for (const auto& de : fs::directory_iterator(spool_dir_, ec)) {
            const std::string file = de.path().filename().string();
            if (file.rfind(prefix, 0) != 0 || de.path().extension() != ".json") {
                continue;  // another hook's entry, or a temp file of an interrupted write
            }
            std::ifstream in(de.path(), std::ios::binary);
            std::stringstream text;
            text << in.rdbuf();
            SpoolEntry e;
            if (!parseSpoolRecord(text.str(), config_.name, e) || pathFor(e.key) != de.path().string()) {
                spdlog::warn("hook {}: ignoring unreadable spool file {}", config_.name, de.path().string());
                continue;
            }
            loaded.push_back(std::move(e));
        }
        std::sort(loaded.begin(), loaded.end(),
                  [](const SpoolEntry& a, const SpoolEntry& b) { return a.created_ms < b.created_ms; });
        for (auto& e : loaded) {
            // Due at once after a restart: the receiver may have been back for a while.
            e.next_attempt_ms = std::min(e.next_attempt_ms, unixMillis(env_.clock->now()));
            {
                std::lock_guard lock(mutex_);
                reloaded_.emplace(e.key, false);
            }
            spoolAdd(std::move(e), false);
        }
        if (!loaded.empty()) {
            spdlog::info("hook {}: {} undelivered notification(s) reloaded from {}", config_.name, loaded.size(),
                         spool_dir_);
        }
    }

    void spoolLoop() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            const std::int64_t now_ms = unixMillis(env_.clock->now());
            const SpoolEntry* due = nullptr;
            std::int64_t earliest = std::numeric_limits<std::int64_t>::max();
            for (const auto& [key, e] : entries_) {
                if (in_flight_.count(key) != 0) {
                    continue;
                }
                earliest = std::min(earliest, e.next_attempt_ms);
                if (e.next_attempt_ms <= now_ms && (due == nullptr || e.next_attempt_ms < due->next_attempt_ms)) {
                    due = &e;
                }
            }
            if (due == nullptr) {
                // Bounded wait: the injected clock may jump, and run() may add entries.
                const auto wait = std::chrono::milliseconds{
                    std::clamp<std::int64_t>(earliest == std::numeric_limits<std::int64_t>::max() ? 200
                                                                                                 : earliest - now_ms,
                                             1, 200)};
                cv_.wait_for(lock, wait);
                continue;
            }
            const std::string key = due->key;
            const std::string body = due->body;
            in_flight_.insert(key);
            worker_key_ = key;
            lock.unlock();
            const detail::PostOutcome out = postOnce(body, key);
            lock.lock();
            unmarkLocked(key);
            worker_key_.clear();
            if (out.ok) {
                if (auto r = reloaded_.find(key); r != reloaded_.end()) {
                    r->second = true;
                }
            }
            cv_.notify_all();
            auto it = entries_.find(key);
            if (it == entries_.end()) {
                continue;  // dropped meanwhile
            }
            const int attempts = ++it->second.attempts;
            HookResult final_result;
            final_result.attempts = attempts;
            final_result.ok = out.ok;
            final_result.message = out.message + " after " + std::to_string(attempts) + " attempts";
            final_result.duration = std::chrono::milliseconds{
                std::max<std::int64_t>(0, unixMillis(env_.clock->now()) - it->second.created_ms)};
            std::optional<Completions> done;
            if (out.ok) {
                spdlog::info("hook {}: notification {} delivered after {} attempt(s): {}", config_.name, key,
                             attempts, out.message);
                ++counters_.spool_delivered;
                done = finishLocked(key, final_result);
            } else if (out.permanent) {
                spdlog::error("hook {}: notification {} rejected after {} attempt(s), dropped: {}", config_.name, key,
                              attempts, out.message);
                ++counters_.spool_dropped;
                final_result.message += " (not retried)";
                done = finishLocked(key, final_result);
            } else if (spool_dir_.empty() && attempts > config_.retries) {
                spdlog::error("hook {}: notification {} not delivered after {} attempt(s), given up (no state_dir: "
                              "no spool): {}",
                              config_.name, key, attempts, out.message);
                done = finishLocked(key, final_result);
            } else {
                it->second.next_attempt_ms = unixMillis(env_.clock->now()) + millis(retryDelay(attempts - 1));
                persistLocked(it->second);
            }
            if (done) {
                lock.unlock();
                completeAll(*done);
                lock.lock();
            }
        }
    }

    HookConfig config_;
    HookEnvironment env_;
    std::string setup_error_;  // non-empty: every run fails with it
    std::vector<std::string> base_headers_;
    std::string secret_;
    PayloadContext context_;
    bool template_json_ = true;
    std::string spool_dir_;  // empty: no spool

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::map<std::string, SpoolEntry> entries_;  // by key; guarded by mutex_
    // Keys being sent right now, by run() or the worker; a multiset since both may send
    // the same key (a repeated event while its entry is due), each removing its own mark.
    std::multiset<std::string> in_flight_;
    std::string worker_key_;  // the key the spool worker is sending now ("" when none)
    // Keys reloaded from the spool at start and not yet seen by run(): true once the
    // worker delivered it (see takeOverReloaded).
    std::map<std::string, bool> reloaded_;
    std::uint64_t next_seq_ = 0;
    HookCounters counters_;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace

namespace detail {

HookEnvironment completeEnvironment(HookEnvironment environment) {
    if (!environment.sleep) {
        environment.sleep = [](std::chrono::nanoseconds d) { std::this_thread::sleep_for(d); };
    }
    if (environment.clock == nullptr) {
        static const rules::SystemClock system_clock;
        environment.clock = &system_clock;
    }
    if (!environment.random01) {
        auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
        auto engine_mutex = std::make_shared<std::mutex>();
        environment.random01 = [engine, engine_mutex] {
            std::lock_guard lock(*engine_mutex);
            return std::uniform_real_distribution<double>(0.0, 1.0)(*engine);
        };
    }
    return environment;
}

std::unique_ptr<Hook> makeWebhookHook(const HookConfig& config, const HookEnvironment& environment) {
    return std::make_unique<WebhookHook>(config, environment);
}

std::unique_ptr<Hook> makeWebhookHook(const HookConfig& config) {
    return makeWebhookHook(config, HookEnvironment{});
}

}  // namespace detail
}  // namespace rollguard::agent
