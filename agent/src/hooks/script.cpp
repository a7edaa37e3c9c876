// script hook: runs an argv (never a shell string) in its own process group, with the
// breach and an allowlisted environment, optionally as another user and in another
// directory, its output captured, a timeout that kills the group, and optional retries.
#include <algorithm>
#include <array>
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
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

namespace rollguard::agent {
namespace {

using detail::UniqueFd;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxOutputBytes = 64 * 1024;  // the tail is what explains a failure
constexpr auto kMaxGrace = std::chrono::seconds{2};
constexpr auto kMinGrace = std::chrono::milliseconds{100};
constexpr auto kFallbackPollInterval = std::chrono::milliseconds{20};
/// Copied from the agent's environment when set. Everything else stays behind: the agent's
/// environment may hold secrets (tokens for webhooks, cloud credentials) that a script
/// must not see unless a hook lists them in inherit_env.
constexpr std::array<const char*, 6> kInheritedByDefault{"HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME"};

// What the child reports through the close-on-exec pipe when it cannot get to exec.
enum class ChildStage : int { Exec = 0, Chdir = 1, Setgroups = 2, Setgid = 3, Setuid = 4 };
struct ChildError {
    int stage = 0;
    int err = 0;
};

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

using Credentials = detail::ScriptCredentials;

std::size_t lookupBufferSize(int name) {
    const long n = ::sysconf(name);
    return n > 0 ? static_cast<std::size_t>(n) : 16384;
}

// getpwnam_r(3): besides 0, these mean "no such name" for some name services.
bool notFound(int rc) {
    return rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM;
}

}  // namespace

namespace detail {

ScriptCredentials resolveScriptCredentials(const HookConfig& config) {
    Credentials c;
    if (config.user.empty() && config.group.empty()) {
        return c;
    }
    c.who = config.user.empty() ? "group " + config.group : "user " + config.user;
    bool have_uid = false;
    uid_t uid = 0;
    gid_t gid = 0;
    if (!config.user.empty()) {
        std::vector<char> buf(lookupBufferSize(_SC_GETPW_R_SIZE_MAX));
        struct passwd pw {};
        struct passwd* found = nullptr;
        int rc = 0;
        while ((rc = ::getpwnam_r(config.user.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE &&
               buf.size() < (1U << 20)) {
            buf.resize(buf.size() * 2);
        }
        if (found == nullptr) {
            c.error = notFound(rc) ? "unknown user '" + config.user + "'"
                                   : "cannot look up user '" + config.user + "': " + std::strerror(rc);
            return c;
        }
        have_uid = true;
        uid = pw.pw_uid;
        gid = pw.pw_gid;
        c.home = pw.pw_dir != nullptr ? pw.pw_dir : "";
        c.user_name = pw.pw_name != nullptr ? pw.pw_name : config.user;
    }
    if (!config.group.empty()) {
        std::vector<char> buf(lookupBufferSize(_SC_GETGR_R_SIZE_MAX));
        struct group gr {};
        struct group* found = nullptr;
        int rc = 0;
        while ((rc = ::getgrnam_r(config.group.c_str(), &gr, buf.data(), buf.size(), &found)) == ERANGE &&
               buf.size() < (1U << 20)) {
            buf.resize(buf.size() * 2);
        }
        if (found == nullptr) {
            c.error = notFound(rc) ? "unknown group '" + config.group + "'"
                                   : "cannot look up group '" + config.group + "': " + std::strerror(rc);
            return c;
        }
        gid = gr.gr_gid;
    }
    // The supplementary groups initgroups(3) would set, computed here: initgroups reads
    // the group database, which the child must not do.
    if (have_uid) {
        int n = 32;
        std::vector<gid_t> groups;
        bool listed = false;
        for (int tries = 0; tries < 8 && !listed; ++tries) {
            groups.assign(static_cast<std::size_t>(n), 0);
            int count = n;
            if (::getgrouplist(config.user.c_str(), gid, groups.data(), &count) >= 0) {
                groups.resize(static_cast<std::size_t>(count));
                listed = true;
            } else {
                n = std::max(count, n * 2);
            }
        }
        if (!listed) {
            groups = {gid};  // could not list them: the primary group alone is the safe side
        }
        c.groups = std::move(groups);
    }
    // Root changes everything (and drops its own supplementary groups with a group-only
    // hook). Anyone else can only "change" to what they already are; that is a no-op,
    // anything more is attempted and fails with EPERM, reported as such.
    const bool root = ::geteuid() == 0;
    c.set_groups = root;
    c.set_gid = root || gid != ::getegid();
    c.gid = gid;
    c.set_uid = have_uid && (root || uid != ::geteuid());
    c.uid = uid;
    return c;
}

// Resolves a bare command name through PATH in the parent, so that the child only has to
// call execve (async-signal-safe; execvp may allocate).
std::string resolveExecutable(const std::string& name, const char* path_env) {
    if (name.find('/') != std::string::npos) {
        return name;
    }
    const std::string path = path_env != nullptr ? path_env : kDefaultScriptPath;
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

std::string scriptPathVariable(const HookConfig& config) {
    std::string path;
    bool set = false;
    for (const auto& [key, value] : config.env) {
        if (key == "PATH") {
            path = value;  // a later entry wins, as EnvBlock::set does
            set = true;
        }
    }
    if (set) {
        return path;
    }
    const char* agent_path = std::getenv("PATH");
    return agent_path != nullptr ? agent_path : kDefaultScriptPath;
}

}  // namespace detail

namespace {

// One run of the script: how it ended, and its output.
struct Attempt {
    bool ok = false;
    bool retryable = false;  // it ran and failed (exit status, signal, timeout)
    std::string status;      // "exit status 3", "timed out after 0.3s", ...
    std::string output;      // tail of stdout+stderr, trimmed
};

Attempt failedToStart(std::string status) {
    Attempt a;
    a.status = std::move(status);
    return a;
}

Attempt runScriptOnce(const HookConfig& config, const Credentials& credentials, const BreachEvent& event) {
    const auto start = Clock::now();
    if (config.command.empty() || config.command[0].empty()) {
        return failedToStart("no command configured");
    }

    // Everything the child needs is built before fork(): after it, in a multithreaded
    // process, only async-signal-safe calls are allowed.
    EnvBlock env;
    const char* agent_path = std::getenv("PATH");
    env.set("PATH", agent_path != nullptr ? agent_path : detail::kDefaultScriptPath);
    for (const char* name : kInheritedByDefault) {
        if (const char* value = std::getenv(name)) {
            env.set(name, value);
        }
    }
    if (!credentials.user_name.empty()) {
        // As login(1), su - and systemd's User= do: the script's home is its user's.
        env.set("HOME", credentials.home);
        env.set("USER", credentials.user_name);
        env.set("LOGNAME", credentials.user_name);
    }
    for (const auto& name : config.inherit_env) {
        if (const char* value = std::getenv(name.c_str())) {
            env.set(name, value);
        }
    }
    for (const auto& [key, value] : breachToEnv(event)) {
        env.set(key, value);
    }
    for (const auto& [key, value] : config.env) {
        env.set(key, value);
    }
    const std::string& name = config.command[0];
    std::string exe = detail::resolveExecutable(name, env.get("PATH"));
    if (exe.empty()) {
        return failedToStart("cannot execute '" + name + "': not found in PATH");
    }
    if (!config.workdir.empty() && exe.front() != '/') {
        // The child changes directory before exec; a relative program means the agent's.
        if (char* cwd = ::getcwd(nullptr, 0)) {
            exe = std::string(cwd) + "/" + exe;
            std::free(cwd);
        }
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
        return failedToStart(std::string("pipe failed: ") + std::strerror(errno));
    }
    UniqueFd out_r(out_pipe[0]);
    UniqueFd out_w(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        return failedToStart(std::string("pipe failed: ") + std::strerror(errno));
    }
    UniqueFd err_r(err_pipe[0]);
    UniqueFd err_w(err_pipe[1]);
    UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null.valid()) {
        return failedToStart(std::string("cannot open /dev/null: ") + std::strerror(errno));
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
    const char* workdir = config.workdir.empty() ? nullptr : config.workdir.c_str();
    const Credentials& cred = credentials;

    const pid_t pid = ::fork();
    if (pid == 0) {
        // Child: async-signal-safe calls only.
        auto fail = [err_fd](ChildStage stage) {
            const ChildError e{static_cast<int>(stage), errno};
            ssize_t ignored = ::write(err_fd, &e, sizeof e);
            static_cast<void>(ignored);
            ::_exit(127);
        };
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
        // Groups first, then the gid, then the uid: after setuid we could no longer.
        if (cred.set_groups && ::setgroups(cred.groups.size(), cred.groups.data()) != 0) {
            fail(ChildStage::Setgroups);
        }
        if (cred.set_gid && ::setgid(cred.gid) != 0) {
            fail(ChildStage::Setgid);
        }
        if (cred.set_uid && ::setuid(cred.uid) != 0) {
            fail(ChildStage::Setuid);
        }
        // After the drop, so that the directory is one the script's user may enter.
        if (workdir != nullptr && ::chdir(workdir) != 0) {
            fail(ChildStage::Chdir);
        }
        ::execve(exe_path, argv_ptr, envp_ptr);
        fail(ChildStage::Exec);
    }
    const int fork_errno = errno;
    out_w.reset();
    err_w.reset();
    dev_null.reset();
    if (pid < 0) {
        return failedToStart(std::string("fork failed: ") + std::strerror(fork_errno));
    }
    // Also set in the parent: whichever runs first, the group exists before we signal it.
    ::setpgid(pid, pid);

    ChildError child_error;
    std::size_t got = 0;
    while (got < sizeof child_error) {
        const ssize_t n = ::read(err_r.get(), reinterpret_cast<char*>(&child_error) + got, sizeof child_error - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    if (got == sizeof child_error) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        const std::string reason = std::strerror(child_error.err);
        switch (static_cast<ChildStage>(child_error.stage)) {
            case ChildStage::Chdir:
                return failedToStart("cannot change to working directory '" + config.workdir + "': " + reason);
            case ChildStage::Setgroups:
            case ChildStage::Setgid:
            case ChildStage::Setuid:
                return failedToStart("cannot drop privileges to " + cred.who + ": " + reason);
            case ChildStage::Exec:
                break;
        }
        return failedToStart("cannot execute '" + exe + "': " + reason);
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

    Attempt a;
    a.retryable = true;
    if (timed_out) {
        a.status = "timed out after " + detail::formatSeconds(timeout);
    } else if (waited != pid) {
        // e.g. SIGCHLD set to SIG_IGN by the embedding program: the kernel reaped it. It
        // may well have succeeded, so it is not run again.
        a.status = std::string("exit status unknown: ") + std::strerror(wait_errno);
        a.retryable = false;
    } else if (WIFEXITED(status)) {
        a.ok = WEXITSTATUS(status) == 0;
        a.status = "exit status " + std::to_string(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        a.status = "killed by signal " + std::to_string(WTERMSIG(status)) + signalName(WTERMSIG(status));
    } else {
        a.status = "ended with wait status " + std::to_string(status);
    }
    a.output = output.summary();
    return a;
}

// Owns its config, the resolved credentials and its environment (sleep, random).
// Thread-safety: run() from one thread at a time (the hook worker).
class ScriptHook final : public Hook {
public:
    ScriptHook(HookConfig config, HookEnvironment environment)
        : config_(std::move(config)),
          env_(detail::completeEnvironment(std::move(environment))),
          credentials_(detail::resolveScriptCredentials(config_)) {}
    const std::string& name() const override { return config_.name; }
    HookType type() const override { return HookType::Script; }

    HookResult run(const BreachEvent& event) override {
        const auto start = Clock::now();
        if (!credentials_.error.empty()) {
            return detail::finishedResult(start, false, credentials_.error);
        }
        // {{rollout_percent}} in env values and arguments: filled per event.
        HookConfig filled;
        if (usesRolloutPercent(config_)) {
            if (auto error = detail::fillRolloutPercent(config_, event, filled)) {
                return detail::finishedResult(start, false, std::move(*error));
            }
        }
        const HookConfig& config = usesRolloutPercent(config_) ? filled : config_;
        Attempt attempt;
        int attempts = 0;
        for (int retry = 0;; ++retry) {
            ++attempts;
            attempt = runScriptOnce(config, credentials_, event);
            if (attempt.ok || !attempt.retryable || retry >= config_.retries) {
                break;
            }
            env_.sleep(backoffDelay(retry, config_.retry_backoff, detail::kMaxRetryBackoff, env_.random01()));
        }
        std::string message = std::move(attempt.status);
        if (attempts > 1) {
            message += " after " + std::to_string(attempts) + " attempts";
        }
        std::string summary;
        if (!attempt.output.empty()) {
            summary = message + " (output in the incident record)";
            message += ": " + attempt.output;
        }
        HookResult result = detail::finishedResult(start, attempt.ok, std::move(message));
        result.summary = std::move(summary);
        result.attempts = attempts;
        return result;
    }

private:
    HookConfig config_;
    HookEnvironment env_;
    Credentials credentials_;
};

}  // namespace

namespace detail {

std::unique_ptr<Hook> makeScriptHook(const HookConfig& config, const HookEnvironment& environment) {
    return std::make_unique<ScriptHook>(config, environment);
}

}  // namespace detail

std::string statusSummary(const HookResult& result) {
    std::string_view text = result.summary.empty() ? result.message : result.summary;
    text = text.substr(0, text.find_first_of("\r\n"));
    if (text.size() <= kStatusSummaryMaxBytes) {
        return std::string(text);
    }
    std::size_t cut = kStatusSummaryMaxBytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0U) == 0x80U) {
        --cut;  // text[cut] continues a UTF-8 character: cut before that character
    }
    return std::string(text.substr(0, cut)) + "...";
}

}  // namespace rollguard::agent
