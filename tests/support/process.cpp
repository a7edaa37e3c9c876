#include "process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "temp_dir.h"

extern char** environ;

namespace rollguard::testing {

Process::Process(std::vector<std::string> argv, const std::string& stdout_path, const std::string& stderr_path,
                 std::vector<std::pair<std::string, std::string>> extra_env) {
    std::vector<char*> args;
    for (auto& a : argv) {
        args.push_back(a.data());
    }
    args.push_back(nullptr);

    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) {
        env_storage.emplace_back(*e);
    }
    for (const auto& [k, v] : extra_env) {
        env_storage.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& e : env_storage) {
        envp.push_back(e.data());
    }
    envp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // Signals blocked by the test runner must not stay blocked in the child.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    const int rc = posix_spawnp(&pid_, args[0], &actions, &attr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        throw std::runtime_error("cannot spawn " + argv[0]);
    }
}

Process::~Process() {
    if (pid_ > 0 && !status_) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        ::waitpid(pid_, &st, 0);
    }
}

void Process::signal(int sig) {
    if (pid_ > 0 && !status_) {
        ::kill(pid_, sig);
    }
}

bool Process::running() {
    if (status_) {
        return false;
    }
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return false;
    }
    return true;
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
    eventually([this] { return !running(); }, timeout);
    return status_;
}

std::pair<int, std::string> runCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    TempDir dir;
    const auto out = (dir / "out").string();
    Process p(argv, out, out + ".err");
    const auto status = p.wait(timeout);
    std::string text = readFile(out) + readFile(out + ".err");
    return {status.value_or(-1), text};
}

}  // namespace rollguard::testing
