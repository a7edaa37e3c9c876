#include "rollguard/agent/proc_metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <string_view>

#include "util/atomic_file.h"

namespace rollguard::agent {

namespace {

// /proc files report size 0, so they are read until EOF; `limit` bounds what a
// malicious or odd file (a huge cmdline) can make us hold.
constexpr std::size_t kSmallFileLimit = 64 * 1024;

// Reads up to `limit` bytes of `path` into `out`. Returns 0, or the errno of the failure.
int readSmallFile(const std::string& path, std::string& out, std::size_t limit = kSmallFileLimit) {
    out.clear();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    char buf[4096];
    int err = 0;
    while (out.size() < limit) {
        const ssize_t n = ::read(fd, buf, std::min(sizeof buf, limit - out.size()));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = errno;
            break;
        }
        if (n == 0) {
            break;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return err;
}

bool isDirectory(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

std::string_view trimWhitespace(std::string_view s) {
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (!s.empty() && is_space(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_space(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

template <typename T>
bool parseNumber(std::string_view s, T& out) {
    if (s.empty()) {
        return false;
    }
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && ptr == s.data() + s.size();
}

// A pid as a directory name: digits only, in range.
bool parsePid(std::string_view s, pid_t& out) {
    long long v = 0;
    if (s.empty() || s.size() > 10 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        !parseNumber(s, v) || v <= 0 || v > INT_MAX) {
        return false;
    }
    out = static_cast<pid_t>(v);
    return true;
}

std::string pidDir(const std::string& proc_root, pid_t pid) {
    return proc_root + "/" + std::to_string(pid);
}

// --- findProcesses --------------------------------------------------------------------

std::vector<pid_t> fromPidFile(const std::string& path, const std::string& proc_root, std::string& error) {
    std::string text;
    if (const int err = readSmallFile(path, text, 4096); err != 0) {
        error = "cannot read pid file " + path + ": " + errnoText(err);
        return {};
    }
    pid_t pid = 0;
    if (!parsePid(trimWhitespace(text), pid)) {
        error = "pid file " + path + " does not hold a pid";
        return {};
    }
    if (!exists(pidDir(proc_root, pid))) {
        error = "stale pid file: " + path + " names pid " + std::to_string(pid) + ", which is not running";
        return {};
    }
    return {pid};
}

// argv[0]'s basename from a cmdline file's content ("" for a kernel thread).
std::string_view argv0Basename(std::string_view cmdline) {
    const auto nul = cmdline.find('\0');
    std::string_view argv0 = cmdline.substr(0, nul);
    const auto slash = argv0.rfind('/');
    if (slash != std::string_view::npos) {
        argv0.remove_prefix(slash + 1);
    }
    return argv0;
}

std::vector<pid_t> byName(const std::string& name, const std::string& proc_root, std::string& error) {
    if (name.find('/') != std::string::npos) {
        error = "process name '" + name + "' must not contain '/'";
        return {};
    }
    DIR* dir = ::opendir(proc_root.c_str());
    if (dir == nullptr) {
        error = "cannot list " + proc_root + ": " + errnoText(errno);
        return {};
    }
    std::vector<pid_t> found;
    std::string text;
    while (const dirent* entry = ::readdir(dir)) {
        pid_t pid = 0;
        if (!parsePid(entry->d_name, pid)) {
            continue;
        }
        const std::string base = pidDir(proc_root, pid);
        // A process gone since the listing just fails to read: skipped.
        if (readSmallFile(base + "/comm", text, 256) == 0) {
            std::string_view comm = text;
            if (!comm.empty() && comm.back() == '\n') {
                comm.remove_suffix(1);
            }
            if (comm == name) {
                found.push_back(pid);
                continue;
            }
        }
        if (readSmallFile(base + "/cmdline", text, 8192) == 0 && argv0Basename(text) == name) {
            found.push_back(pid);
        }
    }
    ::closedir(dir);
    return found;
}

// Appends the pids of cgroup `dir` and its descendants. Returns 0, or the errno of a
// failure on `dir` itself (descendants that vanish meanwhile are skipped).
int collectCgroup(const std::string& dir, std::vector<pid_t>& out, int depth) {
    std::string text;
    if (const int err = readSmallFile(dir + "/cgroup.procs", text, 16 * 1024 * 1024); err != 0) {
        return err;
    }
    std::string_view rest = text;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        pid_t pid = 0;
        if (parsePid(trimWhitespace(rest.substr(0, nl)), pid)) {
            out.push_back(pid);
        }
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    }
    // cgroup v2 nests at most a few levels in practice; the bound only guards against a
    // pathological (or fake) tree.
    if (depth >= 64) {
        return 0;
    }
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        return 0;
    }
    std::vector<std::string> children;
    while (const dirent* entry = ::readdir(d)) {
        const std::string_view name = entry->d_name;
        if (name == "." || name == "..") {
            continue;
        }
        if (entry->d_type == DT_DIR || (entry->d_type == DT_UNKNOWN && isDirectory(dir + "/" + std::string(name)))) {
            children.emplace_back(name);
        }
    }
    ::closedir(d);
    for (const auto& child : children) {
        collectCgroup(dir + "/" + child, out, depth + 1);
    }
    return 0;
}

std::vector<pid_t> byCgroup(const std::string& relative, const std::string& what, const std::string& proc_root,
                            const std::string& cgroup_root, std::string& error) {
    std::string root = cgroup_root;
    if (root.empty()) {
        root = findCgroup2Root(proc_root + "/self/mountinfo");
        if (root.empty()) {
            error = "no cgroup2 file system is mounted (needed for " + what + ")";
            return {};
        }
    }
    std::string_view rel = relative;
    while (!rel.empty() && rel.front() == '/') {
        rel.remove_prefix(1);
    }
    while (!rel.empty() && rel.back() == '/') {
        rel.remove_suffix(1);
    }
    std::string_view scan = rel;
    while (!scan.empty()) {
        const auto slash = scan.find('/');
        const std::string_view part = scan.substr(0, slash);
        if (part == "..") {
            error = what + ": '..' is not allowed in a cgroup path";
            return {};
        }
        scan.remove_prefix(slash == std::string_view::npos ? scan.size() : slash + 1);
    }
    const std::string dir = rel.empty() ? root : root + "/" + std::string(rel);
    if (!isDirectory(dir)) {
        error = what + ": cgroup " + dir + " does not exist";
        return {};
    }
    std::vector<pid_t> pids;
    if (const int err = collectCgroup(dir, pids, 0); err != 0) {
        error = what + ": cannot read " + dir + "/cgroup.procs: " + errnoText(err);
        return {};
    }
    return pids;
}

// --- readProcesses --------------------------------------------------------------------

struct StatFields {
    std::uint64_t utime = 0;
    std::uint64_t stime = 0;
    std::int64_t num_threads = 0;
    std::uint64_t starttime = 0;
};

// Parses /proc/<pid>/stat. The command name sits between the first '(' and the LAST ')':
// it may itself hold spaces, '(' and ')', but nothing after it can hold a ')'.
bool parseStat(std::string_view text, StatFields& out) {
    const auto close = text.rfind(')');
    if (close == std::string_view::npos || text.find('(') > close) {
        return false;
    }
    std::string_view rest = text.substr(close + 1);
    // Fields 3 (state) onwards; index i here is field i + 3 of proc(5).
    std::string_view fields[20];
    std::size_t count = 0;
    while (count < 20) {
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\n')) {
            rest.remove_prefix(1);
        }
        if (rest.empty()) {
            break;
        }
        const auto end = rest.find_first_of(" \n");
        fields[count++] = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    }
    return count == 20 && parseNumber(fields[11], out.utime) && parseNumber(fields[12], out.stime) &&
           parseNumber(fields[17], out.num_threads) && parseNumber(fields[19], out.starttime);
}

// Resident bytes from statm (second field, pages).
bool parseStatm(std::string_view text, long page_size, double& rss_bytes) {
    text = trimWhitespace(text);
    const auto sp = text.find(' ');
    if (sp == std::string_view::npos) {
        return false;
    }
    std::string_view rest = text.substr(sp + 1);
    std::uint64_t pages = 0;
    if (!parseNumber(rest.substr(0, rest.find(' ')), pages)) {
        return false;
    }
    rss_bytes = static_cast<double>(pages) * static_cast<double>(page_size);
    return true;
}

// VmRSS from status, in bytes; a status without VmRSS (a zombie, a kernel thread) is 0.
bool parseStatusRss(std::string_view text, double& rss_bytes) {
    rss_bytes = 0;
    std::string_view rest = text;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        if (line.substr(0, 6) != "VmRSS:") {
            continue;
        }
        line = trimWhitespace(line.substr(6));
        const auto sp = line.find(' ');
        std::uint64_t kb = 0;
        if (!parseNumber(line.substr(0, sp), kb)) {
            return false;
        }
        rss_bytes = static_cast<double>(kb) * 1024.0;
        return true;
    }
    return true;
}

// Boot time in seconds since the epoch, from /proc/stat's btime line; nullopt when absent.
std::optional<std::uint64_t> bootTime(const std::string& proc_root) {
    std::string text;
    if (readSmallFile(proc_root + "/stat", text, 1024 * 1024) != 0) {
        return std::nullopt;
    }
    std::string_view rest = text;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        const std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        if (line.substr(0, 6) == "btime ") {
            std::uint64_t v = 0;
            if (parseNumber(trimWhitespace(line.substr(6)), v)) {
                return v;
            }
        }
    }
    return std::nullopt;
}

enum class ReadOutcome { Ok, Vanished, Unreadable };

// What a failed read of one of a process's files means: ESRCH, or ENOENT with the pid
// directory itself gone, is a process that exited; anything else is a real problem.
ReadOutcome classify(int err, const std::string& base) {
    if (err == ESRCH || (err == ENOENT && !exists(base))) {
        return ReadOutcome::Vanished;
    }
    return ReadOutcome::Unreadable;
}

struct OneProcess {
    double rss_bytes = 0;
    double cpu_ticks = 0;
    std::int64_t fds = 0;
    bool fds_readable = true;
    std::int64_t threads = 0;
    std::uint64_t starttime = 0;
};

ReadOutcome readOne(const std::string& base, long page_size, OneProcess& out, std::string& why) {
    std::string text;
    if (const int err = readSmallFile(base + "/stat", text); err != 0) {
        why = "cannot read " + base + "/stat: " + errnoText(err);
        return classify(err, base);
    }
    StatFields stat;
    if (!parseStat(text, stat)) {
        why = "cannot parse " + base + "/stat";
        return ReadOutcome::Unreadable;
    }
    out.cpu_ticks = static_cast<double>(stat.utime) + static_cast<double>(stat.stime);
    out.threads = stat.num_threads;
    out.starttime = stat.starttime;

    if (const int err = readSmallFile(base + "/statm", text); err == 0) {
        if (!parseStatm(text, page_size, out.rss_bytes)) {
            why = "cannot parse " + base + "/statm";
            return ReadOutcome::Unreadable;
        }
    } else if (classify(err, base) == ReadOutcome::Vanished) {
        return ReadOutcome::Vanished;
    } else if (const int err2 = readSmallFile(base + "/status", text); err2 != 0) {
        why = "cannot read " + base + "/statm or status: " + errnoText(err2);
        return classify(err2, base);
    } else if (!parseStatusRss(text, out.rss_bytes)) {
        why = "cannot parse VmRSS in " + base + "/status";
        return ReadOutcome::Unreadable;
    }

    DIR* dir = ::opendir((base + "/fd").c_str());
    if (dir == nullptr) {
        const int err = errno;
        if (classify(err, base) == ReadOutcome::Vanished) {
            return ReadOutcome::Vanished;
        }
        out.fds_readable = false;
        return ReadOutcome::Ok;
    }
    std::int64_t fds = 0;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string_view name = entry->d_name;
        if (name != "." && name != "..") {
            ++fds;
        }
    }
    ::closedir(dir);
    out.fds = fds;
    return ReadOutcome::Ok;
}

}  // namespace

std::string findCgroup2Root(const std::string& mountinfo_path) {
    std::string text;
    if (readSmallFile(mountinfo_path, text, 4 * 1024 * 1024) != 0) {
        return "";
    }
    // mountinfo octal-escapes space, tab, newline and backslash in paths.
    const auto octal = [](char c) { return c >= '0' && c <= '7'; };
    const auto unescape = [&octal](std::string_view s) {
        std::string out;
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) && octal(s[i + 3])) {
                out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
                i += 3;
            } else {
                out.push_back(s[i]);
            }
        }
        return out;
    };
    std::string first;
    std::string_view rest = text;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        // id parent major:minor root mount-point options [optional...] - fstype source super
        std::vector<std::string_view> fields;
        while (!line.empty()) {
            const auto sp = line.find(' ');
            fields.push_back(line.substr(0, sp));
            line.remove_prefix(sp == std::string_view::npos ? line.size() : sp + 1);
        }
        const auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
        if (fields.size() < 6 || dash == fields.end() || dash + 1 == fields.end() || dash - fields.begin() < 6 ||
            *(dash + 1) != "cgroup2") {
            continue;
        }
        std::string mount_point = unescape(fields[4]);
        if (fields[3] == "/") {
            return mount_point;
        }
        if (first.empty()) {
            first = std::move(mount_point);
        }
    }
    return first;
}

std::vector<pid_t> findProcesses(const ProcessSelector& selector, std::string& error, const std::string& proc_root,
                                 const std::string& cgroup_root) {
    error.clear();
    if (selector.value.empty()) {
        error = "empty process selector";
        return {};
    }
    std::vector<pid_t> pids;
    switch (selector.kind) {
        case ProcessSelector::PidFile:
            pids = fromPidFile(selector.value, proc_root, error);
            break;
        case ProcessSelector::Name:
            pids = byName(selector.value, proc_root, error);
            break;
        case ProcessSelector::Cgroup:
            pids = byCgroup(selector.value, "cgroup '" + selector.value + "'", proc_root, cgroup_root, error);
            break;
        case ProcessSelector::Unit: {
            std::string unit = selector.value;
            if (unit.find('/') != std::string::npos || unit == "." || unit == "..") {
                error = "unit '" + unit + "' is not a unit name";
                return {};
            }
            if (unit.find('.') == std::string::npos) {
                unit += ".service";
            }
            pids = byCgroup("system.slice/" + unit, "unit '" + unit + "'", proc_root, cgroup_root, error);
            break;
        }
        default:
            error = "unknown process selector kind";
            return {};
    }
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    return pids;
}

ProcessSample readProcesses(const std::vector<pid_t>& pids, const std::string& proc_root) {
    ProcessSample sample;
    const long clk_tck = std::max(1L, ::sysconf(_SC_CLK_TCK));
    const long page_size = std::max(1L, ::sysconf(_SC_PAGESIZE));
    std::vector<pid_t> unique = pids;
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());

    double cpu_ticks = 0;
    bool any = false;
    for (const pid_t pid : unique) {
        if (pid <= 0) {
            continue;
        }
        OneProcess one;
        std::string why;
        switch (readOne(pidDir(proc_root, pid), page_size, one, why)) {
            case ReadOutcome::Vanished:
                ++sample.vanished;
                continue;
            case ReadOutcome::Unreadable:
                ++sample.unreadable;
                if (sample.error.empty()) {
                    sample.error = why;
                }
                continue;
            case ReadOutcome::Ok:
                break;
        }
        sample.rss_bytes += one.rss_bytes;
        cpu_ticks += one.cpu_ticks;
        sample.threads += one.threads;
        if (one.fds_readable) {
            sample.open_fds += one.fds;
        } else {
            ++sample.fds_unreadable;
        }
        ++sample.processes;
        if (!any || one.starttime < sample.start_ticks) {
            sample.start_ticks = one.starttime;
        }
        any = true;
    }
    sample.cpu_seconds_total = cpu_ticks / static_cast<double>(clk_tck);
    if (any) {
        const double since_boot = static_cast<double>(sample.start_ticks) / static_cast<double>(clk_tck);
        const auto boot = bootTime(proc_root);
        sample.start_time_seconds = boot ? static_cast<double>(*boot) + since_boot : since_boot;
    }
    return sample;
}

std::optional<double> CpuPercent::update(const ProcessSample& sample, std::chrono::nanoseconds elapsed) {
    const std::optional<Previous> previous = previous_;
    if (sample.processes > 0) {
        previous_ = Previous{sample.cpu_seconds_total, sample.start_ticks};
    } else {
        previous_.reset();
    }
    if (!previous || !previous_ || elapsed <= std::chrono::nanoseconds::zero() ||
        previous->start_ticks != sample.start_ticks || sample.cpu_seconds_total < previous->cpu_seconds_total) {
        return std::nullopt;
    }
    const double seconds = std::chrono::duration<double>(elapsed).count();
    return (sample.cpu_seconds_total - previous->cpu_seconds_total) / seconds * 100.0;
}

}  // namespace rollguard::agent
