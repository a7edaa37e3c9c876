// makeHook and HookRunner: the lanes that carry hooks out (see HookRunner in hooks.h).
#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

namespace rollguard::agent {

std::unique_ptr<Hook> makeHook(const HookConfig& config) {
    return makeHook(config, HookEnvironment{});
}

std::unique_ptr<Hook> makeHook(const HookConfig& config, const HookEnvironment& environment) {
    switch (config.type) {
        case HookType::EnvFile:
            return detail::makeFileHook(config, applyEnvFile);
        case HookType::Webhook:
            return detail::makeWebhookHook(config, environment);
        case HookType::Script:
            return detail::makeScriptHook(config, environment);
        case HookType::Alertmanager:
            return detail::makeAlertmanagerHook(config, environment);
        case HookType::JsonFile:
            return detail::makeFileHook(
                config, static_cast<HookResult (*)(const HookConfig&, const BreachEvent&)>(applyJsonFile));
        case HookType::TomlFile:
            return detail::makeFileHook(config, applyTomlFile);
    }
    return nullptr;
}

std::string stepStatus(const HookResult& result) {
    if (result.skipped) {
        return "skipped";
    }
    if (result.deferred) {
        return "spooled";
    }
    return result.ok ? "ok" : "failed";
}

namespace {

/// Why a hook with `run_if` is skipped for `event` (after its `steps`), or "" when it
/// runs. A "spooled" step has not failed: its delivery is still going on.
std::string skipReason(RunIf run_if, const BreachEvent& event) {
    // run_if judges a rollback's steps; a resolved event has none to judge and must reach
    // every notification its fire may have sent (a "previous_failed" PagerDuty escalation
    // resolves its incident too; a resolve of an alert never sent is ignored downstream).
    if (event.state == "resolved") {
        return {};
    }
    const std::vector<HookStep>& steps = event.steps;
    const bool any_failed =
        std::any_of(steps.begin(), steps.end(), [](const HookStep& s) { return s.status == "failed"; });
    if (run_if == RunIf::PreviousOk && any_failed) {
        return "skipped: an earlier step failed (run_if = \"previous_ok\")";
    }
    if (run_if == RunIf::PreviousFailed && !any_failed) {
        return "skipped: no earlier step failed (run_if = \"previous_failed\")";
    }
    return {};
}

/// What pairs a deferred run with its final result.
std::string deferredKey(const std::string& hook, const BreachEvent& event) {
    return hook + "\n" + idempotencyKey(event, hook);
}

}  // namespace

HookRunner::HookRunner(Callback on_result, StartCallback on_start)
    : on_result_(std::move(on_result)), on_start_(std::move(on_start)) {}

HookRunner::~HookRunner() {
    stop();
}

void HookRunner::add(std::unique_ptr<Hook> hook, RunIf run_if) {
    if (!hook) {
        return;
    }
    const std::string name = hook->name();
    hook->setCompletion([this, name](const BreachEvent& event, const HookResult& result) {
        onFinalResult(name, event, result);
    });
    std::lock_guard lock(mutex_);
    hooks_.push_back(Entry{std::move(hook), run_if});
}

void HookRunner::enqueue(std::vector<std::string> hook_names, BreachEvent event) {
    Job job;
    job.hooks = std::move(hook_names);
    job.event = std::move(event);
    std::unique_lock lock(mutex_);
    if (stopping_) {
        lock.unlock();
        // A rollback must never vanish silently: after stop() each hook is still
        // reported, as a failure, here on the calling thread since the lanes are gone.
        reportFailed(job, "hook runner is stopped");
        return;
    }
    reapLocked();
    const std::string rule = job.event.rule;
    const std::string group = job.event.group;
    RuleLanes& lanes = rules_[rule];
    std::optional<Job> dropped;
    std::optional<Job> not_started;
    if (lanes.queued >= kMaxQueuedJobsPerRule && !job.rollback()) {
        dropped = dropOneLocked(rule, lanes);
    }
    Lane& lane = lanes.by_group[group];
    lane.jobs.push_back(std::move(job));
    ++lanes.queued;
    ++busy_;
    if (!lane.running) {
        if (lanes.running < kMaxRunningLanesPerRule) {
            lane.running = true;
            ++lanes.running;
            try {
                std::thread t([this, rule, group] { laneLoop(rule, group); });
                const auto id = t.get_id();
                threads_.emplace(id, std::move(t));
            } catch (const std::system_error& e) {
                // No thread (the process is at its limit): the job cannot run; it is
                // reported, not kept waiting for a lane that will never come.
                spdlog::error("hooks of rule {}: cannot start a thread: {}", rule, e.what());
                lane.running = false;
                --lanes.running;
                not_started = std::move(lane.jobs.back());
                lane.jobs.pop_back();
                --lanes.queued;
                if (--busy_ == 0) {
                    idle_cv_.notify_all();
                }
                if (lane.jobs.empty()) {
                    lanes.by_group.erase(group);
                }
            }
        } else if (std::find(lanes.waiting.begin(), lanes.waiting.end(), group) == lanes.waiting.end()) {
            lanes.waiting.push_back(group);  // the next of the rule's lanes to finish takes it
        }
    }
    lock.unlock();
    if (not_started) {
        reportFailed(*not_started, "cannot start a thread for the hooks of rule " + rule);
    }
    if (dropped) {
        // Outside the lock: the callback may take locks of its own that a caller of
        // enqueue() holds.
        reportFailed(*dropped, "dropped: more than " + std::to_string(kMaxQueuedJobsPerRule) + " jobs of rule " +
                                   rule + " were waiting");
    }
}

std::optional<HookRunner::Job> HookRunner::dropOneLocked(const std::string& rule, RuleLanes& lanes) {
    // The oldest waiting job of the rule that is not a rollback: a lane's first job may
    // be running (popped already), so every queued job is waiting.
    Lane* oldest_lane = nullptr;
    std::deque<Job>::iterator oldest;
    for (auto& [group, lane] : lanes.by_group) {
        for (auto it = lane.jobs.begin(); it != lane.jobs.end(); ++it) {
            if (it->rollback()) {
                continue;
            }
            if (oldest_lane == nullptr || it->event.fired_at < oldest->event.fired_at) {
                oldest_lane = &lane;
                oldest = it;
            }
            break;  // within a lane the first non-critical job is its oldest
        }
    }
    if (oldest_lane == nullptr) {
        return std::nullopt;  // only rollbacks waiting: keep them all
    }
    Job job = std::move(*oldest);
    oldest_lane->jobs.erase(oldest);
    --lanes.queued;
    --busy_;
    ++dropped_;
    spdlog::warn("hooks of rule {}: {} jobs waiting, the most kept per rule; dropping the oldest ({} {}, hooks [{}])",
                 rule, kMaxQueuedJobsPerRule, job.event.state, job.event.group.empty() ? "" : "{" + job.event.group + "}",
                 fmt::join(job.hooks, ", "));
    return job;
}

void HookRunner::reportFailed(const Job& job, const std::string& message) {
    if (!on_result_) {
        return;
    }
    for (const auto& hook_name : job.hooks) {
        HookResult r;
        r.message = message;
        r.attempts = 0;
        try {
            on_result_(hook_name, job.event, r);
        } catch (...) {
            // The callback only logs and counts; its failure must not reach the caller.
        }
    }
}

std::vector<std::pair<std::string, HookCounters>> HookRunner::counters() const {
    std::lock_guard lock(mutex_);
    std::vector<std::pair<std::string, HookCounters>> out;
    out.reserve(hooks_.size());
    for (const auto& h : hooks_) {
        out.emplace_back(h.hook->name(), h.hook->counters());
    }
    return out;
}

std::uint64_t HookRunner::dropped() const {
    std::lock_guard lock(mutex_);
    return dropped_;
}

std::size_t HookRunner::queued() const {
    std::lock_guard lock(mutex_);
    return busy_;
}

void HookRunner::waitIdle() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [this] { return busy_ == 0 && (deferred_ == 0 || stopping_); });
}

void HookRunner::stop() {
    std::map<std::thread::id, std::thread> threads;
    {
        std::unique_lock lock(mutex_);
        stopping_ = true;
        // The lanes finish what is queued; wait for them before joining, since a lane
        // moves on to its rule's waiting groups on the same thread.
        idle_cv_.wait(lock, [this] { return busy_ == 0; });
        threads = std::move(threads_);
        threads_.clear();
        finished_.clear();
    }
    idle_cv_.notify_all();
    for (auto& [id, t] : threads) {
        if (t.joinable()) {
            t.join();
        }
    }
    // Deferred deliveries go on in their hooks (and their spool) until the hooks are
    // destroyed, but their outcomes no longer reach the callback: its owner may be
    // going away. Waits for a final result being reported right now.
    std::lock_guard closing(callback_mutex_);
    callbacks_closed_ = true;
}

void HookRunner::reapLocked() {
    for (const auto& id : finished_) {
        auto it = threads_.find(id);
        if (it != threads_.end()) {
            it->second.join();  // it has returned from laneLoop: joins at once
            threads_.erase(it);
        }
    }
    finished_.clear();
}

const HookRunner::Entry* HookRunner::findHook(const std::string& name) const {
    std::lock_guard lock(mutex_);
    for (const auto& h : hooks_) {
        if (h.hook->name() == name) {
            return &h;  // hooks_ only grows and owns its hooks: valid unlocked
        }
    }
    return nullptr;
}

void HookRunner::laneLoop(std::string rule, std::string group) {
    std::unique_lock lock(mutex_);
    for (;;) {
        RuleLanes& lanes = rules_[rule];
        Lane& lane = lanes.by_group[group];
        if (lane.jobs.empty()) {
            lane.running = false;
            lanes.by_group.erase(group);
            // Hand this thread to the rule's next waiting group, if any.
            if (!lanes.waiting.empty()) {
                group = lanes.waiting.front();
                lanes.waiting.pop_front();
                lanes.by_group[group].running = true;
                continue;
            }
            --lanes.running;
            if (lanes.running == 0 && lanes.by_group.empty()) {
                rules_.erase(rule);
            }
            finished_.push_back(std::this_thread::get_id());
            return;
        }
        Job job = std::move(lane.jobs.front());
        lane.jobs.pop_front();
        --lanes.queued;
        lock.unlock();
        runJob(job);
        lock.lock();
        --busy_;
        if (busy_ == 0) {
            idle_cv_.notify_all();
        }
    }
}

void HookRunner::runJob(Job& job) {
    for (const auto& hook_name : job.hooks) {
        const Entry* entry = findHook(hook_name);
        const auto start = std::chrono::steady_clock::now();
        HookResult result;
        if (entry == nullptr) {
            result.message = "unknown hook";
        } else if (auto why = skipReason(entry->run_if, job.event); !why.empty()) {
            result.ok = true;
            result.skipped = true;
            result.attempts = 0;
            result.message = std::move(why);
        } else {
            if (on_start_) {
                try {
                    on_start_(hook_name, job.event);
                } catch (...) {
                    // Recording the start is best effort; the hook still runs.
                }
            }
            try {
                result = entry->hook->run(job.event);
            } catch (const std::exception& e) {
                result = HookResult{};
                result.message = std::string("hook threw: ") + e.what();
            } catch (...) {
                result = HookResult{};
                result.message = "hook threw an unknown exception";
            }
            if (result.duration.count() == 0) {
                result.duration = detail::elapsedSince(start);
            }
        }
        if (result.deferred) {
            onDeferredRun(hook_name, job.event, result);
        } else if (on_result_) {
            try {
                on_result_(hook_name, job.event, result);
            } catch (...) {
                // The callback only logs and counts; the next hook must still run.
            }
        }
        job.event.steps.push_back(HookStep{hook_name, stepStatus(result), result.message});
    }
}

void HookRunner::onDeferredRun(const std::string& hook, const BreachEvent& event, const HookResult& result) {
    {
        std::lock_guard lock(mutex_);
        deferred_ += result.durable ? 0 : 1;
    }
    if (on_result_) {
        try {
            on_result_(hook, event, result);
        } catch (...) {
            // As for any result: the callback only logs and counts.
        }
    }
    std::optional<std::pair<BreachEvent, HookResult>> early;
    {
        const std::string key = deferredKey(hook, event);
        std::lock_guard lock(mutex_);
        if (auto it = early_.find(key); it != early_.end()) {
            early = std::move(it->second);
            early_.erase(it);
        } else {
            announced_[key].push_back(result.durable);
        }
    }
    if (early) {
        reportFinal(hook, early->first, early->second, result.durable);
    }
}

void HookRunner::onFinalResult(const std::string& hook, const BreachEvent& event, const HookResult& result) {
    bool durable = false;
    {
        const std::string key = deferredKey(hook, event);
        std::lock_guard lock(mutex_);
        auto it = announced_.find(key);
        if (it == announced_.end()) {
            early_.emplace(key, std::pair(event, result));  // its run has not reported yet
            return;
        }
        durable = it->second.front();
        it->second.pop_front();
        if (it->second.empty()) {
            announced_.erase(it);
        }
    }
    reportFinal(hook, event, result, durable);
}

void HookRunner::reportFinal(const std::string& hook, const BreachEvent& event, const HookResult& result,
                             bool durable) {
    {
        std::lock_guard closing(callback_mutex_);
        if (on_result_ && !callbacks_closed_) {
            try {
                on_result_(hook, event, result);
            } catch (...) {
                // As for any result: the callback only logs and counts.
            }
        }
    }
    if (!durable) {
        std::lock_guard lock(mutex_);
        --deferred_;
        idle_cv_.notify_all();
    }
}

}  // namespace rollguard::agent
