#include "running_agent.h"

#include "http_client.h"
#include "temp_dir.h"

namespace rollguard::testing {
namespace {

std::vector<std::string> runArgv(const std::filesystem::path& config, std::vector<std::string> extra) {
    std::vector<std::string> argv{ROLLGUARD_BIN, "run", "-c", config.string()};
    argv.insert(argv.end(), std::make_move_iterator(extra.begin()), std::make_move_iterator(extra.end()));
    return argv;
}

}  // namespace

RunningAgent::RunningAgent(const std::filesystem::path& config, std::vector<std::string> extra_args,
                           std::vector<std::pair<std::string, std::string>> extra_env,
                           const std::filesystem::path& output_dir)
    : out_((output_dir.empty() ? config.parent_path() : output_dir) / "rollguard.stdout"),
      err_((output_dir.empty() ? config.parent_path() : output_dir) / "rollguard.stderr"),
      process_(runArgv(config, std::move(extra_args)), out_.string(), err_.string(), std::move(extra_env)) {}

std::string RunningAgent::stderrText() const {
    return readFile(err_);
}

bool RunningAgent::waitHealthy(std::uint16_t port, std::chrono::milliseconds timeout) {
    return eventually([&] { return process_.running() && httpGet(port, "/healthz").status == 200; }, timeout);
}

}  // namespace rollguard::testing
