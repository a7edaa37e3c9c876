#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

#include "rollguard/agent/hooks.h"

namespace rollguard::testing {

/// Runs `hook` for `event` and returns its final result: the run's own, or when the run
/// returned `deferred` (a webhook whose first attempt did not deliver) the one its
/// background delivery completes with. `nudge` is called every few milliseconds while
/// waiting (a test on a fake clock moves the clock there). Throws after `limit`: a
/// delivery that never ends is a hang, not a slow machine.
/// Sets the hook's completion: use it on hooks no HookRunner owns.
inline agent::HookResult finalResult(agent::Hook& hook, const agent::BreachEvent& event,
                                     const std::function<void()>& nudge = {},
                                     std::chrono::seconds limit = std::chrono::seconds{120}) {
    auto promise = std::make_shared<std::promise<agent::HookResult>>();
    auto future = promise->get_future();
    hook.setCompletion([promise](const agent::BreachEvent&, const agent::HookResult& r) {
        try {
            promise->set_value(r);
        } catch (const std::future_error&) {
            // A second completion for this key: the first one is the answer.
        }
    });
    const agent::HookResult first = hook.run(event);
    if (!first.deferred) {
        return first;
    }
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (future.wait_for(std::chrono::milliseconds{5}) != std::future_status::ready) {
        if (std::chrono::steady_clock::now() > deadline) {
            throw std::runtime_error("the deferred delivery did not end");
        }
        if (nudge) {
            nudge();
        }
    }
    return future.get();
}

}  // namespace rollguard::testing
