// makeHook and HookRunner: the queue and the one worker that carries hooks out.
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

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
    return result.ok ? "ok" : "failed";
}

namespace {

/// Why a hook with `run_if` is skipped for `event` (after its `steps`), or "" when it runs.
std::string skipReason(RunIf run_if, const BreachEvent& event) {
    // run_if judges a rollback's steps; a resolved event has none to judge and must reach
    // every notification its fire may have sent (a "previous_failed" PagerDuty escalation
    // resolves its incident too; a resolve of an alert never sent is ignored downstream).
    if (event.state == "resolved") {
        return {};
    }
    const std::vector<HookStep>& steps = event.steps;
    bool any_failed = false;
    for (const auto& s : steps) {
        any_failed = any_failed || s.status == "failed";
    }
    if (run_if == RunIf::PreviousOk && any_failed) {
        return "skipped: an earlier step failed (run_if = \"previous_ok\")";
    }
    if (run_if == RunIf::PreviousFailed && !any_failed) {
        return "skipped: no earlier step failed (run_if = \"previous_failed\")";
    }
    return {};
}

}  // namespace

HookRunner::HookRunner(Callback on_result, StartCallback on_start)
    : on_result_(std::move(on_result)), on_start_(std::move(on_start)) {
    worker_ = std::thread([this] { workerLoop(); });
}

HookRunner::~HookRunner() {
    stop();
}

void HookRunner::add(std::unique_ptr<Hook> hook, RunIf run_if) {
    if (!hook) {
        return;
    }
    std::lock_guard lock(mutex_);
    hooks_.push_back(Entry{std::move(hook), run_if});
}

void HookRunner::enqueue(std::vector<std::string> hook_names, BreachEvent event) {
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            queue_.push_back(Job{std::move(hook_names), std::move(event)});
            cv_.notify_one();
            return;
        }
    }
    // A rollback must never vanish silently: after stop() each hook is still reported,
    // as a failure, here on the calling thread since the worker is gone.
    if (on_result_) {
        for (const auto& hook_name : hook_names) {
            HookResult r;
            r.message = "hook runner is stopped";
            try {
                on_result_(hook_name, event, r);
            } catch (...) {
                // The callback only logs and counts; its failure must not reach the caller.
            }
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

void HookRunner::waitIdle() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

void HookRunner::stop() {
    std::thread worker;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        worker = std::move(worker_);
    }
    cv_.notify_all();
    if (worker.joinable()) {
        worker.join();
    }
}

void HookRunner::workerLoop() {
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) {
                return;  // stopping, and everything queued before stop() has run
            }
            job = std::move(queue_.front());
            queue_.pop_front();
            busy_ = true;
        }
        for (const auto& hook_name : job.hooks) {
            Hook* hook = nullptr;
            RunIf run_if = RunIf::Always;
            {
                // hooks_ only grows and owns its hooks, so the pointer stays valid unlocked.
                std::lock_guard lock(mutex_);
                for (const auto& h : hooks_) {
                    if (h.hook->name() == hook_name) {
                        hook = h.hook.get();
                        run_if = h.run_if;
                        break;
                    }
                }
            }
            const auto start = std::chrono::steady_clock::now();
            HookResult result;
            if (hook == nullptr) {
                result.message = "unknown hook";
            } else if (auto why = skipReason(run_if, job.event); !why.empty()) {
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
                    result = hook->run(job.event);
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
            if (on_result_) {
                try {
                    on_result_(hook_name, job.event, result);
                } catch (...) {
                    // The callback only logs and counts; the next hook must still run.
                }
            }
            job.event.steps.push_back(HookStep{hook_name, stepStatus(result), result.message});
        }
        {
            std::lock_guard lock(mutex_);
            busy_ = false;
            if (queue_.empty()) {
                idle_cv_.notify_all();
            }
        }
    }
}

}  // namespace rollguard::agent
