// alertmanager hook: pushes alerts to an Alertmanager's /api/v2/alerts, re-sending firing
// ones while they fire (as Prometheus does) and ending them on resolve.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "hooks/hooks_internal.h"
#include "hooks/http_post.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_writer.h"

namespace rollguard::agent {
namespace {

// A firing alert's endsAt is this many resend intervals ahead (Prometheus uses 4): if
// the agent dies, Alertmanager resolves it on its own a few missed re-sends later.
constexpr int kEndsAtResends = 4;

/// Owns the set of firing alerts and the thread that re-sends them.
///
/// A firing alert is pushed once by run(): when that push does not get through, the run
/// returns `deferred` (durable: the re-sends own it) and the steps after it go on, since
/// the re-send thread sends every firing alert every resend_interval anyway; the first
/// re-send that gets through completes the run ("HTTP 200 (re-sent)"). A resolve is sent
/// with the configured retries.
/// Ordering: a resolve waits (at most one `timeout`) while a re-send that carries its
/// alert as firing is in flight (resending_), and no later re-send carries it, so the
/// resolve is the last thing Alertmanager hears of it. Other alerts never wait: runs of
/// different lanes do not hold each other back.
/// Thread-safety: run() from any thread; firing_ and resending_ under mutex_.
class AlertmanagerHook final : public Hook {
public:
    AlertmanagerHook(HookConfig config, HookEnvironment environment)
        : config_(std::move(config)), env_(detail::completeEnvironment(std::move(environment))) {
        std::string base = config_.url;
        while (!base.empty() && base.back() == '/') {
            base.pop_back();
        }
        url_ = base + "/api/v2/alerts";
        headers_.emplace_back("Content-Type: application/json");
        for (const auto& [hname, value] : config_.headers) {
            if (hname.empty() || hname.find_first_of(":\r\n") != std::string::npos ||
                value.find_first_of("\r\n") != std::string::npos) {
                setup_error_ = "invalid header '" + hname + "'";
                return;
            }
            headers_.push_back(hname + ": " + value);
        }
        if (!config_.bearer_token_file.empty() || !config_.bearer_token_env.empty()) {
            std::string token;
            if (!detail::readSecret(config_.bearer_token_file, config_.bearer_token_env, "bearer token", token,
                                    setup_error_)) {
                return;
            }
            headers_.push_back("Authorization: Bearer " + token);
        }
        resender_ = std::thread([this] { resendLoop(); });
    }

    ~AlertmanagerHook() override {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_all();
        sent_cv_.notify_all();
        if (resender_.joinable()) {
            resender_.join();
        }
    }

    AlertmanagerHook(const AlertmanagerHook&) = delete;
    AlertmanagerHook& operator=(const AlertmanagerHook&) = delete;

    const std::string& name() const override { return config_.name; }
    HookType type() const override { return HookType::Alertmanager; }

    HookResult run(const BreachEvent& event) override {
        const auto start = std::chrono::steady_clock::now();
        HookResult result;
        result.attempts = 0;
        if (!setup_error_.empty()) {
            result.message = setup_error_;
            return result;
        }
        std::vector<Report> pending;  // completions to send with mutex_ released
        const std::string id = incidentId(event);
        const bool resolved = event.state == "resolved";
        {
            std::unique_lock lock(mutex_);
            if (resolved) {
                if (auto it = firing_.find(id); it != firing_.end()) {
                    if (it->second.report) {
                        HookResult gone;
                        gone.message = "not delivered before the alert resolved";
                        pending.push_back(Report{it->second.event, gone});
                    }
                    firing_.erase(it);
                }
                if (resending_.count(id) != 0) {
                    lock.unlock();
                    observe("wait");
                    lock.lock();
                    sent_cv_.wait(lock, [&] { return resending_.count(id) == 0 || stopping_; });
                }
            } else {
                firing_[id] = Firing{event, false};
            }
        }
        for (const auto& r : pending) {
            complete(r.event, r.result);
        }
        BreachEvent sent = event;
        if (resolved && sent.resolved_at == rules::TimePoint{}) {
            sent.resolved_at = env_.clock->now();
        }
        const std::string body = "[" + alertJson(sent) + "]";
        // A firing alert gets one attempt here: its re-sends are its retries.
        const int retries = resolved ? config_.retries : 0;
        detail::PostOutcome out;
        for (int retry = 0;; ++retry) {
            ++result.attempts;
            out = detail::httpPost(url_, headers_, body, config_.timeout);
            if (out.ok || out.permanent || retry >= retries) {
                break;
            }
            env_.sleep(backoffDelay(retry, config_.retry_backoff, detail::kMaxRetryBackoff, env_.random01()));
        }
        result.ok = out.ok;
        result.message = out.message;
        if (result.attempts > 1) {
            result.message += " after " + std::to_string(result.attempts) + " attempts";
        }
        if (out.permanent) {
            result.message += " (not retried)";
        } else if (!out.ok && !resolved) {
            std::lock_guard lock(mutex_);
            if (auto it = firing_.find(id); it != firing_.end()) {
                it->second.report = true;
                result.deferred = true;
                result.durable = true;  // owned by the re-sends, not by a waiting caller
            }
            result.message += "; re-sent every " + detail::formatSeconds(config_.resend_interval) + " while firing";
        }
        result.duration = detail::elapsedSince(start);
        return result;
    }

private:
    std::string alertJson(const BreachEvent& event) const {
        JsonWriter w;
        w.beginObject();
        w.key("labels").beginObject();
        for (const auto& [k, v] : detail::alertLabels(event)) {
            w.key(k).value(v);
        }
        w.endObject();
        w.key("annotations").beginObject();
        w.key("summary").value(event.summary);
        w.key("description").value(event.description);
        w.endObject();
        w.key("startsAt").value(formatRfc3339(event.since));
        if (event.state == "resolved") {
            w.key("endsAt").value(formatRfc3339(event.resolved_at));
        } else {
            const auto ends = env_.clock->now() + std::chrono::duration_cast<rules::TimePoint::duration>(
                                                      config_.resend_interval * kEndsAtResends);
            w.key("endsAt").value(formatRfc3339(ends));
        }
        const std::string generator = detail::statusUrl(config_.external_url);
        if (!generator.empty()) {
            w.key("generatorURL").value(generator);
        }
        w.endObject();
        return w.str();
    }

    void observe(std::string_view what) const {
        if (env_.observe) {
            env_.observe(what);
        }
    }

    void resendLoop() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            cv_.wait_for(lock, config_.resend_interval, [this] { return stopping_; });
            if (stopping_) {
                continue;
            }
            std::string body;
            for (const auto& [id, firing] : firing_) {
                body += (body.empty() ? "[" : ",") + alertJson(firing.event);
                resending_.insert(id);
            }
            lock.unlock();
            std::vector<Report> delivered;
            if (body.empty()) {
                observe("idle");
            } else {
                body += "]";
                observe("resend");
                const detail::PostOutcome out = detail::httpPost(url_, headers_, body, config_.timeout);
                if (!out.ok) {
                    spdlog::warn("hook {}: re-sending firing alerts to {} failed: {}", config_.name, url_,
                                 out.message);
                }
                lock.lock();
                for (auto& [id, firing] : firing_) {
                    if (out.ok && firing.report && resending_.count(id) != 0) {
                        firing.report = false;
                        HookResult r;
                        r.ok = true;
                        r.message = out.message + " (re-sent)";
                        delivered.push_back(Report{firing.event, r});
                    }
                }
                lock.unlock();
            }
            for (const auto& r : delivered) {
                complete(r.event, r.result);
            }
            lock.lock();
            resending_.clear();
            sent_cv_.notify_all();
        }
    }

    struct Firing {
        BreachEvent event;
        bool report = false;  // its run returned deferred: the first re-send that gets through completes it
    };
    struct Report {
        BreachEvent event;
        HookResult result;
    };

    HookConfig config_;
    HookEnvironment env_;
    std::string url_;
    std::vector<std::string> headers_;
    std::string setup_error_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::condition_variable sent_cv_;            // resending_ emptied
    std::map<std::string, Firing> firing_;       // by incident id; guarded by mutex_
    std::set<std::string> resending_;            // ids in the re-send in flight; guarded by mutex_
    bool stopping_ = false;
    std::thread resender_;
};

}  // namespace

namespace detail {

std::unique_ptr<Hook> makeAlertmanagerHook(const HookConfig& config, const HookEnvironment& environment) {
    return std::make_unique<AlertmanagerHook>(config, environment);
}

}  // namespace detail
}  // namespace rollguard::agent
