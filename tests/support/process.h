#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <sys/types.h>
#include <time.h>
#include <utility>
#include <vector>

namespace rollguard::testing {

/// A child process for integration tests: argv exec (no shell), stdout and stderr sent
/// to files. The destructor kills and reaps a process still running.
class Process {
public:
    Process(std::vector<std::string> argv, const std::string& stdout_path, const std::string& stderr_path,
            std::vector<std::pair<std::string, std::string>> extra_env = {});
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    void signal(int sig);
    /// Exit status (or 128 + signal); nullopt if still running after `timeout`.
    std::optional<int> wait(std::chrono::milliseconds timeout);
    bool running();

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
};

/// Runs argv to completion and returns (exit code, stdout + stderr).
std::pair<int, std::string> runCommand(const std::vector<std::string>& argv,
                                       std::chrono::milliseconds timeout = std::chrono::seconds{30});

/// Polls `predicate` every 20 ms until it holds or `timeout` passes. The tests' one way
/// to wait for something to happen (never a fixed sleep): the default deadline is
/// generous because it costs nothing when the condition comes true, and a loaded machine
/// (sanitizers, `ctest -j`) can be slow by seconds.
template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = std::chrono::seconds{20}) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) {
            return true;
        }
        struct timespec ts {0, 20'000'000};
        ::nanosleep(&ts, nullptr);
    }
    return predicate();
}

}  // namespace rollguard::testing
