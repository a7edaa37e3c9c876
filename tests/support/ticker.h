#pragma once

#include <chrono>
#include <functional>
#include <stop_token>
#include <thread>
#include <utility>

namespace rollguard::testing {

/// A test's background workload: calls `step` on its own thread, then sleeps `period`,
/// until destroyed (the destructor stops and joins it). Make it the last member of the
/// class whose state `step` touches, or emplace it into a std::optional at the end of
/// that class's constructor, so it stops before that state goes away.
class Ticker {
public:
    Ticker(std::chrono::milliseconds period, std::function<void()> step)
        : thread_([period, step = std::move(step)](std::stop_token stop) {
              while (!stop.stop_requested()) {
                  step();
                  std::this_thread::sleep_for(period);  // pacing the workload, not timing a check
              }
          }) {}

private:
    std::jthread thread_;
};

}  // namespace rollguard::testing
