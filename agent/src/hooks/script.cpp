// script hook: runs an argv (never a shell string) in its own process group, with the
// breach in its environment, its output captured, and a timeout that kills the group.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

extern char** environ;

namespace rollguard::agent {
namespace {

using detail::UniqueFd;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxOutputBytes = 64 * 1024;  // the tail is what explains a failure
constexpr auto kMaxGrace = std::chrono::seconds{2};
constexpr auto kMinGrace = std::chrono::milliseconds{100};
constexpr auto kFallbackPollInterval = std::chrono::milliseconds{20};

// The environment as "KEY=VALUE" strings; a later set() replaces an earlier one.
class EnvBlock {
public:
    void set(std::string_view key, std::string_view value) {
        std::string entry = std::string(key) + "=" + std::string(value);
        for (auto& e : entries_) {
            if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
                e = std::move(entry);
                return;
            }
        }
        entries_.push_back(std::move(entry));
    }
    void addRaw(const char* entry) {
        const char* eq = std::strchr(entry, '=');
        if (eq != nullptr && eq != entry) {
            set(std::string_view(entry, static_cast<std::size_t>(eq - entry)), eq + 1);
        }
    }
    const char* get(std::string_view key) const {
        for (const auto& e : entries_) {
            if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
                return e.c_str() + key.size() + 1;
            }
        }
        return nullptr;
    }
    std::vector<char*> pointers() {
        std::vector<char*> p;
        p.reserve(entries_.size() + 1);
        for (auto& e : entries_) {
            p.push_back(e.data());
        }
        p.push_back(nullptr);
        return p;
    }

private:
    std::vector<std::string> entries_;
};

// Resolves a bare command name through PATH in the parent, so that the child only has to
// call execve (async-signal-safe; execvp may allocate).
std::string resolveExecutable(const std::string& name, const char* path_env) {
    if (name.find('/') != std::string::npos) {
        return name;
    }
    const std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
    std::size_t begin = 0;
    for (;;) {
        const std::size_t end = std::min(path.find(':', begin), path.size());
        const std::string dir = end == begin ? "." : path.substr(begin, end - begin);
        const std::string candidate = dir + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        if (end >= path.size()) {
            return {};
        }
        begin = end + 1;
    }
}

// Whether the child has exited, without reaping it: a zombie keeps its pid (and so its
// process group id) reserved until we are done signalling the group.
bool hasExited(pid_t pid) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        return errno != EINTR;  // ECHILD: someone else reaped it; nothing left to wait for
    }
    return info.si_pid == pid;
}

// Captures the tail of the child's output.
class OutputTail {
public:
    explicit OutputTail(int fd) : fd_(fd) {}
    bool open() const { return fd_.valid(); }
    int fd() const { return fd_.get(); }

    // Reads what is available without blocking; closes the pipe at EOF. Bounded, so a
    // writer that keeps the pipe full cannot hold us past a deadline.
    void drain() {
        char buf[16 * 1024];
        for (int reads = 0; fd_.valid() && reads < 64; ++reads) {
            const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
            if (n > 0) {
                text_.append(buf, static_cast<std::size_t>(n));
                if (text_.size() > kMaxOutputBytes) {
                    text_.erase(0, text_.size() - kMaxOutputBytes);
                    truncated_ = true;
                }
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n == 0 || errno != EAGAIN) {
                fd_.reset();
            }
            return;
        }
    }

    std::string summary() const {
        std::string t = detail::trimText(text_);
        if (truncated_ && !t.empty()) {
            t = "[...] " + t;
        }
        return t;
    }

private:
    UniqueFd fd_;
    std::string text_;
    bool truncated_ = false;
};

// Waits until the child exits or `deadline` passes, collecting output meanwhile.
bool waitForExit(pid_t pid, int pidfd, OutputTail& out, Clock::time_point deadline) {
    for (;;) {
        if (hasExited(pid)) {
            return true;
        }
        const auto now = Clock::now();
        if (now >= deadline) {
            return false;
        }
        auto wait = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
        if (pidfd < 0) {
            wait = std::min<std::chrono::milliseconds>(wait, kFallbackPollInterval);
        }
        pollfd fds[2];
        nfds_t n = 0;
        if (out.open()) {
            fds[n++] = pollfd{out.fd(), POLLIN, 0};
        }
        if (pidfd >= 0) {
            fds[n++] = pollfd{pidfd, POLLIN, 0};
        }
        const int rc = ::poll(fds, n, static_cast<int>(wait.count()));
        if (rc > 0 && out.open() && fds[0].revents != 0) {
            out.drain();
        }
    }
}

std::string signalName(int sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    return abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : std::string();
}

HookResult runScript(const HookConfig& config, const BreachEvent& event) {
    const auto start = Clock::now();
    auto finish = [start](bool ok, std::string message) { return detail::finishedResult(start, ok, std::move(message)); };
    if (config.command.empty() || config.command[0].empty()) {
        return finish(false, "no command configured");
    }

    // Everything the child needs is built before fork(): after it, in a multithreaded
    // process, only async-signal-safe calls are allowed.
    EnvBlock env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        env.addRaw(*e);
    }
    for (const auto& [key, value] : breachToEnv(event)) {
        env.set(key, value);
    }
    for (const auto& [key, value] : config.env) {
        env.set(key, value);
    }
    const std::string& name = config.command[0];
    const std::string exe = resolveExecutable(name, env.get("PATH"));
    if (exe.empty()) {
        return finish(false, "cannot execute '" + name + "': not found in PATH");
    }
    std::vector<std::string> args = config.command;
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<char*> envp = env.pointers();

    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
        return finish(false, std::string("pipe failed: ") + std::strerror(errno));
    }
    UniqueFd out_r(out_pipe[0]);
    UniqueFd out_w(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        return finish(false, std::string("pipe failed: ") + std::strerror(errno));
    }
    UniqueFd err_r(err_pipe[0]);
    UniqueFd err_w(err_pipe[1]);
    UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null.valid()) {
        return finish(false, std::string("cannot open /dev/null: ") + std::strerror(errno));
    }
    rlimit nofile{};
    int max_fd = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
        max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 65536));
    }
    sigset_t empty_mask;
    sigemptyset(&empty_mask);
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    const int in_fd = dev_null.get();
    const int out_fd = out_w.get();
    const int err_fd = err_w.get();
    const char* exe_path = exe.c_str();
    char* const* argv_ptr = argv.data();
    char* const* envp_ptr = envp.data();

    const pid_t pid = ::fork();
    if (pid == 0) {
        // Child: async-signal-safe calls only.
        ::setpgid(0, 0);
        // Ignored signals and a blocked mask survive exec; the script gets a clean slate
        // (a daemon typically blocks SIGTERM in its threads to sigwait for it).
        for (int sig = 1; sig < NSIG; ++sig) {
            ::sigaction(sig, &default_action, nullptr);
        }
        ::sigprocmask(SIG_SETMASK, &empty_mask, nullptr);
        ::dup2(in_fd, STDIN_FILENO);
        ::dup2(out_fd, STDOUT_FILENO);
        ::dup2(out_fd, STDERR_FILENO);
        // Nothing else the agent has open may leak into the script. The error pipe is
        // close-on-exec, so it stays open exactly until exec succeeds.
        if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            for (int fd = 3; fd < max_fd; ++fd) {
                if (fd != err_fd) {
                    ::close(fd);
                }
            }
        }
        ::execve(exe_path, argv_ptr, envp_ptr);
        const int err = errno;
        ssize_t ignored = ::write(err_fd, &err, sizeof err);
        static_cast<void>(ignored);
        ::_exit(127);
    }
    const int fork_errno = errno;
    out_w.reset();
    err_w.reset();
    dev_null.reset();
    if (pid < 0) {
        return finish(false, std::string("fork failed: ") + std::strerror(fork_errno));
    }
    // Also set in the parent: whichever runs first, the group exists before we signal it.
    ::setpgid(pid, pid);

    int exec_errno = 0;
    std::size_t got = 0;
    while (got < sizeof exec_errno) {
        const ssize_t n = ::read(err_r.get(), reinterpret_cast<char*>(&exec_errno) + got, sizeof exec_errno - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    if (got == sizeof exec_errno) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return finish(false, "cannot execute '" + exe + "': " + std::strerror(exec_errno));
    }

    ::fcntl(out_r.get(), F_SETFL, ::fcntl(out_r.get(), F_GETFL) | O_NONBLOCK);
    OutputTail output(out_r.release());
    // Readable when the child exits. glibc 2.36's <sys/pidfd.h> lacks C linkage, hence the
    // raw syscall; without it (old kernel, seccomp) we poll every 20 ms instead.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));

    const auto timeout = std::max<std::chrono::nanoseconds>(config.timeout, std::chrono::milliseconds{1});
    bool timed_out = false;
    if (!waitForExit(pid, pidfd.get(), output, start + timeout)) {
        timed_out = true;
        ::kill(-pid, SIGTERM);
        const auto grace = std::clamp<std::chrono::nanoseconds>(timeout, kMinGrace, kMaxGrace);
        waitForExit(pid, pidfd.get(), output, Clock::now() + grace);
        // Stragglers in the group (children that ignored SIGTERM) go too. The leader is
        // not reaped yet, so the group id cannot have been reused.
        ::kill(-pid, SIGKILL);
    }
    output.drain();
    int status = 0;
    pid_t waited = -1;
    while ((waited = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    const int wait_errno = errno;

    std::string message;
    bool ok = false;
    if (timed_out) {
        message = "timed out after " + detail::formatSeconds(timeout);
    } else if (waited != pid) {
        // e.g. SIGCHLD set to SIG_IGN by the embedding program: the kernel reaped it.
        message = std::string("exit status unknown: ") + std::strerror(wait_errno);
    } else if (WIFEXITED(status)) {
        ok = WEXITSTATUS(status) == 0;
        message = "exit status " + std::to_string(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        message = "killed by signal " + std::to_string(WTERMSIG(status)) + signalName(WTERMSIG(status));
    } else {
        message = "ended with wait status " + std::to_string(status);
    }
    const std::string text = output.summary();
    if (!text.empty()) {
        message += ": " + text;
    }
    return finish(ok, std::move(message));
}

class ScriptHook final : public Hook {
public:
    explicit ScriptHook(HookConfig config) : config_(std::move(config)) {}
    const std::string& name() const override { return config_.name; }
    HookType type() const override { return HookType::Script; }
    HookResult run(const BreachEvent& event) override { return runScript(config_, event); }

private:
    HookConfig config_;
};

}  // namespace

namespace detail {

std::unique_ptr<Hook> makeScriptHook(const HookConfig& config) {
    return std::make_unique<ScriptHook>(config);
}

}  // namespace detail
}  // namespace rollguard::agent
