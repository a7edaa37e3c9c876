#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "process.h"

namespace rollguard::testing {

/// `rollguard run -c <config>` of an integration test (ROLLGUARD_BIN), with its stdout
/// and stderr in `<output_dir>/rollguard.stdout` / `rollguard.stderr`; `output_dir`
/// defaults to the config's directory. Give it (a TempDir) when the config is a shipped
/// one in the source tree (config/examples/...), so nothing is written there and tests
/// running in parallel on other shipped configs do not share those files. The destructor
/// kills a process still running (Process).
class RunningAgent {
public:
    RunningAgent(const std::filesystem::path& config, std::vector<std::string> extra_args = {},
                 std::vector<std::pair<std::string, std::string>> extra_env = {},
                 const std::filesystem::path& output_dir = {});

    Process& process() { return process_; }
    bool running() { return process_.running(); }
    void signal(int sig) { process_.signal(sig); }
    /// Exit status (or 128 + signal); nullopt if still running after `timeout`.
    std::optional<int> wait(std::chrono::milliseconds timeout) { return process_.wait(timeout); }
    /// Everything the agent wrote to stderr so far (its log).
    std::string stderrText() const;
    const std::filesystem::path& stderrPath() const { return err_; }
    /// Waits until GET /healthz on 127.0.0.1:`port` answers 200.
    bool waitHealthy(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds{10});

private:
    std::filesystem::path out_;
    std::filesystem::path err_;
    Process process_;
};

}  // namespace rollguard::testing
