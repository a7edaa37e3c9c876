// alertmanager hook: pushes alerts to an Alertmanager's /api/v2/alerts, re-sending firing
// ones while they fire (as Prometheus does) and ending them on resolve.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
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
/// Thread-safety: run() from the hook worker; the resender runs on its own thread.
/// Every POST of the hook (run()'s, with its retries, and each re-send) happens under
/// send_mutex_, and run() changes firing_ only while holding it: a re-send that carries
/// an alert as firing has been answered before that alert's resolve is posted, and no
/// later re-send carries it, so the resolve is the last thing Alertmanager hears of it.
/// A resolve (or a fire) waits for a re-send in flight, at most its `timeout`.
/// Lock order: send_mutex_, then mutex_.
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
        const std::string id = incidentId(event);
        const bool resolved = event.state == "resolved";
        std::unique_lock send(send_mutex_, std::try_to_lock);
        if (!send.owns_lock()) {
            observe("wait");
            send.lock();
        }
        {
            std::lock_guard lock(mutex_);
            if (resolved) {
                firing_.erase(id);
            } else {
                firing_[id] = event;
            }
        }
        BreachEvent sent = event;
        if (resolved && sent.resolved_at == rules::TimePoint{}) {
            sent.resolved_at = env_.clock->now();
        }
        const std::string body = "[" + alertJson(sent) + "]";
        detail::PostOutcome out;
        for (int retry = 0;; ++retry) {
            ++result.attempts;
            out = detail::httpPost(url_, headers_, body, config_.timeout);
            if (out.ok || out.permanent || retry >= config_.retries) {
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
            lock.unlock();
            {
                // Held from the snapshot to the answer: a resolve waits for this POST,
                // and this POST carries no alert resolved before it.
                std::lock_guard send(send_mutex_);
                std::string body;
                {
                    std::lock_guard state(mutex_);
                    for (const auto& [id, event] : firing_) {
                        body += (body.empty() ? "[" : ",") + alertJson(event);
                    }
                }
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
                }
            }
            lock.lock();
        }
    }

    HookConfig config_;
    HookEnvironment env_;
    std::string url_;
    std::vector<std::string> headers_;
    std::string setup_error_;
    std::mutex send_mutex_;  // held for every POST; see the class comment
    std::mutex mutex_;
    std::condition_variable cv_;
    std::map<std::string, BreachEvent> firing_;  // by incident id; guarded by mutex_
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
