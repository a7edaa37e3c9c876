#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rollguard/agent/proc_metrics.h"
#include "process.h"
#include "temp_dir.h"

using rollguard::agent::CpuPercent;
using rollguard::agent::findCgroup2Root;
using rollguard::agent::findProcesses;
using rollguard::agent::ProcessSample;
using rollguard::agent::ProcessSelector;
using rollguard::agent::readProcesses;
using rollguard::testing::eventually;
using rollguard::testing::Process;
using rollguard::testing::readFile;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace fs = std::filesystem;

namespace {

const double kClkTck = static_cast<double>(::sysconf(_SC_CLK_TCK));
const double kPageSize = static_cast<double>(::sysconf(_SC_PAGESIZE));

struct FakeStat {
    std::uint64_t utime = 0;
    std::uint64_t stime = 0;
    std::int64_t threads = 1;
    std::uint64_t starttime = 0;
};

// A /proc/<pid>/stat line as the kernel writes it (fields from proc(5)); cutime and
// cstime are non-zero so a test notices if they leak into the CPU total.
std::string statLine(pid_t pid, const std::string& comm, const FakeStat& s) {
    return std::to_string(pid) + " (" + comm + ") S 1 1 1 0 -1 4194560 120 0 0 0 " + std::to_string(s.utime) + " " +
           std::to_string(s.stime) + " 7 9 20 0 " + std::to_string(s.threads) + " 0 " + std::to_string(s.starttime) +
           " 123456789 999 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
}

// A fake /proc/<pid> directory: stat, statm (resident pages, unless < 0), comm, cmdline
// and `fds` entries under fd/ (unless < 0).
fs::path fakeProcess(const fs::path& root, pid_t pid, const std::string& comm, const FakeStat& stat,
                     long resident_pages = 0, int fds = 3, const std::string& cmdline = "") {
    const fs::path dir = root / std::to_string(pid);
    fs::create_directories(dir);
    writeFile(dir / "stat", statLine(pid, comm, stat));
    if (resident_pages >= 0) {
        writeFile(dir / "statm", "5000 " + std::to_string(resident_pages) + " 100 10 0 400 0\n");
    }
    writeFile(dir / "comm", comm + "\n");
    writeFile(dir / "cmdline", cmdline);
    if (fds >= 0) {
        fs::create_directories(dir / "fd");
        for (int i = 0; i < fds; ++i) {
            writeFile(dir / "fd" / std::to_string(i), "");
        }
    }
    return dir;
}

void fakeBootTime(const fs::path& root, std::uint64_t btime) {
    fs::create_directories(root);
    writeFile(root / "stat", "cpu  1 2 3 4 5 6 7 0 0 0\nintr 1 2 3\nctxt 99\nbtime " + std::to_string(btime) +
                                 "\nprocesses 1000\n");
}

std::vector<pid_t> find(ProcessSelector::Kind kind, const std::string& value, std::string& error,
                        const std::string& proc_root = "/proc", const std::string& cgroup_root = "") {
    return findProcesses(ProcessSelector{kind, value}, error, proc_root, cgroup_root);
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
    return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

// Starts rollguard-prochog with `args` and waits for its "ready" line.
struct Hog {
    TempDir dir;
    Process process;
    explicit Hog(std::vector<std::string> args)
        : process(withBinary(std::move(args)), (dir / "out").string(), (dir / "err").string()) {}

    static std::vector<std::string> withBinary(std::vector<std::string> args) {
        args.insert(args.begin(), ROLLGUARD_PROCHOG_BIN);
        return args;
    }
    bool ready() {
        return eventually([&] { return readFile(dir / "out").find("ready") != std::string::npos; },
                          std::chrono::seconds{30});
    }
    pid_t pid() const { return process.pid(); }
};

ProcessSample sampleOf(double cpu_seconds, std::uint64_t start_ticks = 500, std::int64_t processes = 1) {
    ProcessSample s;
    s.cpu_seconds_total = cpu_seconds;
    s.start_ticks = start_ticks;
    s.processes = processes;
    return s;
}

}  // namespace

// --- readProcesses on a fake /proc tree ----------------------------------------------

TEST_CASE("proc stat is parsed from the last paren so a name with spaces and parens cannot shift fields",
          "[proc]") {
    TempDir tmp;
    const fs::path root = tmp / "proc";
    fakeBootTime(root, 1'700'000'000);
    fakeProcess(root, 4242, "evil) (name", FakeStat{150, 50, 7, 12345}, 256, 5);

    const ProcessSample s = readProcesses({4242}, root.string());
    CHECK(s.error.empty());
    CHECK(s.processes == 1);
    CHECK(s.cpu_seconds_total == Approx(200.0 / kClkTck));
    CHECK(s.threads == 7);
    CHECK(s.rss_bytes == Approx(256.0 * kPageSize));
    CHECK(s.open_fds == 5);
    CHECK(s.fds_unreadable == 0);
    CHECK(s.start_ticks == 12345);
    CHECK(s.start_time_seconds == Approx(1'700'000'000.0 + 12345.0 / kClkTck));
    CHECK(s.vanished == 0);
    CHECK(s.unreadable == 0);
}

TEST_CASE("proc name that looks like a whole stat tail is still parsed right", "[proc]") {
    TempDir tmp;
    const fs::path root = tmp / "proc";
    fakeBootTime(root, 1000);
    // A command may name itself anything (prctl PR_SET_NAME): fake fields and a ')' inside.
    fakeProcess(root, 77, ") R 9 9 9 9 9 9 9 9 9 9 9 9999 9999 (", FakeStat{3, 4, 2, 100}, 10, 0);
    const ProcessSample s = readProcesses({77}, root.string());
    CHECK(s.processes == 1);
    CHECK(s.cpu_seconds_total == Approx(7.0 / kClkTck));
    CHECK(s.threads == 2);
    CHECK(s.start_ticks == 100);
    CHECK(s.open_fds == 0);
}

TEST_CASE("proc rss falls back to status VmRSS when statm is missing", "[proc]") {
    TempDir tmp;
    const fs::path root = tmp / "proc";
    fakeBootTime(root, 1000);
    const fs::path dir = fakeProcess(root, 10, "svc", FakeStat{1, 1, 1, 1}, -1);
    writeFile(dir / "status", "Name:\tsvc\nState:\tS (sleeping)\nVmPeak:\t 9999 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n");
    ProcessSample s = readProcesses({10}, root.string());
    CHECK(s.error.empty());
    CHECK(s.processes == 1);
    CHECK(s.rss_bytes == Approx(2048.0 * 1024.0));

    // A zombie's status has no VmRSS at all: 0 bytes, still a process.
    writeFile(dir / "status", "Name:\tsvc\nState:\tZ (zombie)\nThreads:\t1\n");
    s = readProcesses({10}, root.string());
    CHECK(s.processes == 1);
    CHECK(s.rss_bytes == 0);

    // Neither file: the process is there but cannot be measured.
    fs::remove(dir / "status");
    s = readProcesses({10}, root.string());
    CHECK(s.processes == 0);
    CHECK(s.unreadable == 1);
    CHECK(s.error.find("statm or status") != std::string::npos);
}

TEST_CASE("proc pids that vanished are skipped and broken ones are reported", "[proc]") {
    TempDir tmp;
    const fs::path root = tmp / "proc";
    fakeBootTime(root, 1000);
    fakeProcess(root, 1, "init", FakeStat{10, 20, 1, 5}, 100, 4);
    fakeProcess(root, 2, "worker", FakeStat{1, 2, 3, 50}, 200, 6);
    const fs::path broken = fakeProcess(root, 3, "broken", FakeStat{}, 1);
    writeFile(broken / "stat", "3 (broken) S 1 2\n");
    const fs::path no_stat = fakeProcess(root, 4, "half", FakeStat{}, 1);
    fs::remove(no_stat / "stat");

    // 9 has no directory at all (exited between find and read); 1 is listed twice.
    const ProcessSample s = readProcesses({2, 9, 1, 3, 1, 4}, root.string());
    CHECK(s.processes == 2);
    CHECK(s.vanished == 1);
    CHECK(s.unreadable == 2);
    CHECK(s.error == "cannot parse " + (root / "3").string() + "/stat");
    CHECK(s.cpu_seconds_total == Approx(33.0 / kClkTck));
    CHECK(s.threads == 4);
    CHECK(s.rss_bytes == Approx(300.0 * kPageSize));
    CHECK(s.open_fds == 10);
    // The earliest start of the set.
    CHECK(s.start_ticks == 5);
    CHECK(s.start_time_seconds == Approx(1000.0 + 5.0 / kClkTck));

    const ProcessSample none = readProcesses({}, root.string());
    CHECK(none.processes == 0);
    CHECK(none.start_time_seconds == 0);
    CHECK(none.error.empty());
}

TEST_CASE("proc missing fd directory and boot time degrade without dropping the process", "[proc]") {
    TempDir tmp;
    const fs::path root = tmp / "proc";
    fakeProcess(root, 5, "nofd", FakeStat{1, 1, 1, 250}, 3, -1);
    const ProcessSample s = readProcesses({5}, root.string());
    CHECK(s.processes == 1);
    CHECK(s.fds_unreadable == 1);
    CHECK(s.open_fds == 0);
    // No <proc_root>/stat: seconds since boot.
    CHECK(s.start_time_seconds == Approx(250.0 / kClkTck));
}

TEST_CASE("proc fd directory of another user's process is counted unreadable", "[proc]") {
    if (::geteuid() != 0) {
        // Unprivileged already: pid 1 usually belongs to someone else.
        const ProcessSample s = readProcesses({1});
        if (s.processes == 1 && s.fds_unreadable == 0) {
            WARN("pid 1's fd directory is readable here: permission denied cannot be tested");
        }
        return;
    }
    const passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    const uid_t uid = nobody->pw_uid;
    const gid_t gid = nobody->pw_gid;
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
            ::_exit(2);
        }
        const ProcessSample s = readProcesses({parent});
        const std::string text = std::to_string(s.processes) + " " + std::to_string(s.fds_unreadable) + " " +
                                 std::to_string(s.open_fds) + " " + std::to_string(s.threads > 0);
        const ssize_t n = ::write(fds[1], text.data(), text.size());
        ::_exit(n == static_cast<ssize_t>(text.size()) ? 0 : 3);
    }
    ::close(fds[1]);
    std::string text;
    char buf[256];
    ssize_t n = 0;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    // Read as a process (stat is world-readable), fds not: "1 process, 1 unreadable, 0 fds".
    CHECK(text == "1 1 0 1");
}

// --- findProcesses on fake trees -----------------------------------------------------

TEST_CASE("proc find by name matches comm exactly or the basename of argv0", "[proc]") {
    TempDir tmp;
    const fs::path root = tmp / "proc";
    using namespace std::string_literals;
    fakeProcess(root, 100, "rollguard-proch", FakeStat{}, 1, 0, "/opt/bin/rollguard-prochog\0--busy\0"s);
    fakeProcess(root, 101, "nginx", FakeStat{}, 1, 0, "nginx: worker process"s);
    fakeProcess(root, 102, "kworker/0:1", FakeStat{}, 0, 0, ""s);
    fakeProcess(root, 103, "nginx", FakeStat{}, 1, 0, "/usr/sbin/nginx\0-g\0daemon off;\0"s);
    fakeProcess(root, 104, "python3", FakeStat{}, 1, 0, "/usr/bin/python3\0/srv/app.py\0"s);
    fs::create_directories(root / "self");
    fs::create_directories(root / "sys");
    writeFile(root / "uptime", "1.0 1.0\n");
    fs::create_directories(root / "200");  // vanished mid-walk: no comm, no cmdline

    std::string error;
    CHECK(find(ProcessSelector::Name, "nginx", error, root.string()) == std::vector<pid_t>{101, 103});
    CHECK(error.empty());
    // comm is cut to 15 bytes by the kernel: the full name matches through argv[0] ...
    CHECK(find(ProcessSelector::Name, "rollguard-prochog", error, root.string()) == std::vector<pid_t>{100});
    // ... the truncated one through comm, and no other prefix matches.
    CHECK(find(ProcessSelector::Name, "rollguard-proch", error, root.string()) == std::vector<pid_t>{100});
    CHECK(find(ProcessSelector::Name, "rollguard-procho", error, root.string()).empty());
    CHECK(error.empty());
    CHECK(find(ProcessSelector::Name, "ngin", error, root.string()).empty());
    CHECK(find(ProcessSelector::Name, "nginx: worker process", error, root.string()) == std::vector<pid_t>{101});
    CHECK(find(ProcessSelector::Name, "kworker/0:1", error, root.string()).empty());
    CHECK(error == "process name 'kworker/0:1' must not contain '/'");
    // An interpreter's script is argv[1], not argv[0].
    CHECK(find(ProcessSelector::Name, "app.py", error, root.string()).empty());
    CHECK(find(ProcessSelector::Name, "python3", error, root.string()) == std::vector<pid_t>{104});
    CHECK(find(ProcessSelector::Name, "", error, root.string()).empty());
    CHECK(error == "empty process selector");
    CHECK(find(ProcessSelector::Name, "x", error, (tmp / "nope").string()).empty());
    CHECK(error.find("cannot list") == 0);
}

TEST_CASE("proc find by pid file reports stale and malformed files", "[proc]") {
    TempDir tmp;
    const fs::path root = tmp / "proc";
    fakeProcess(root, 103, "nginx", FakeStat{});
    std::string error;
    writeFile(tmp / "good.pid", "  103\n");
    CHECK(find(ProcessSelector::PidFile, (tmp / "good.pid").string(), error, root.string()) ==
          std::vector<pid_t>{103});
    CHECK(error.empty());

    writeFile(tmp / "stale.pid", "999\n");
    CHECK(find(ProcessSelector::PidFile, (tmp / "stale.pid").string(), error, root.string()).empty());
    CHECK(error == "stale pid file: " + (tmp / "stale.pid").string() + " names pid 999, which is not running");

    for (const char* junk : {"", "abc\n", "12 13\n", "-5\n", "0\n", "99999999999\n"}) {
        writeFile(tmp / "bad.pid", junk);
        CHECK(find(ProcessSelector::PidFile, (tmp / "bad.pid").string(), error, root.string()).empty());
        CHECK(error == "pid file " + (tmp / "bad.pid").string() + " does not hold a pid");
    }
    CHECK(find(ProcessSelector::PidFile, (tmp / "missing.pid").string(), error, root.string()).empty());
    CHECK(error == "cannot read pid file " + (tmp / "missing.pid").string() + ": No such file or directory");
}

TEST_CASE("proc find by cgroup and unit walks the cgroup and its descendants", "[proc]") {
    TempDir tmp;
    const fs::path cg = tmp / "cgroup";
    fs::create_directories(cg / "system.slice" / "foo.service" / "sub" / "deeper");
    fs::create_directories(cg / "system.slice" / "bar.service");
    writeFile(cg / "cgroup.procs", "1\n");
    writeFile(cg / "system.slice" / "cgroup.procs", "");
    writeFile(cg / "system.slice" / "foo.service" / "cgroup.procs", "11\n10\n");
    writeFile(cg / "system.slice" / "foo.service" / "sub" / "cgroup.procs", "12\n");
    writeFile(cg / "system.slice" / "foo.service" / "sub" / "deeper" / "cgroup.procs", "13\n");
    writeFile(cg / "system.slice" / "bar.service" / "cgroup.procs", "");
    const std::string root = cg.string();

    std::string error;
    CHECK(find(ProcessSelector::Unit, "foo.service", error, "/proc", root) == std::vector<pid_t>{10, 11, 12, 13});
    CHECK(error.empty());
    CHECK(find(ProcessSelector::Unit, "foo", error, "/proc", root) == std::vector<pid_t>{10, 11, 12, 13});
    CHECK(find(ProcessSelector::Cgroup, "/system.slice/foo.service/sub", error, "/proc", root) ==
          std::vector<pid_t>{12, 13});
    CHECK(find(ProcessSelector::Cgroup, "system.slice/", error, "/proc", root) == std::vector<pid_t>{10, 11, 12, 13});
    CHECK(find(ProcessSelector::Cgroup, "/", error, "/proc", root) == std::vector<pid_t>{1, 10, 11, 12, 13});
    // An existing but empty unit: nothing runs, which is not an error.
    CHECK(find(ProcessSelector::Unit, "bar.service", error, "/proc", root).empty());
    CHECK(error.empty());

    CHECK(find(ProcessSelector::Unit, "nope.service", error, "/proc", root).empty());
    CHECK(error == "unit 'nope.service': cgroup " + root + "/system.slice/nope.service does not exist");
    CHECK(find(ProcessSelector::Unit, "system.slice/foo.service", error, "/proc", root).empty());
    CHECK(error == "unit 'system.slice/foo.service' is not a unit name");
    CHECK(find(ProcessSelector::Cgroup, "system.slice/../../etc", error, "/proc", root).empty());
    CHECK(error == "cgroup 'system.slice/../../etc': '..' is not allowed in a cgroup path");
}

TEST_CASE("proc cgroup2 root comes from mountinfo", "[proc]") {
    TempDir tmp;
    // This container's hybrid layout: v1 controllers under a tmpfs, cgroup2 at unified.
    writeFile(tmp / "hybrid",
              "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n"
              "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
              "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
              "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
    CHECK(findCgroup2Root((tmp / "hybrid").string()) == "/sys/fs/cgroup/unified");
    // Optional fields before the separator, and a namespaced mount listed before the root one.
    writeFile(tmp / "pure",
              "25 20 0:22 /../.. /mnt/other rw shared:4 - cgroup2 cgroup2 rw\n"
              "26 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 master:1 - cgroup2 cgroup2 "
              "rw,nsdelegate\n");
    CHECK(findCgroup2Root((tmp / "pure").string()) == "/sys/fs/cgroup");
    writeFile(tmp / "escaped", "26 20 0:22 /x /my\\040cgroups rw - cgroup2 cgroup2 rw\n");
    CHECK(findCgroup2Root((tmp / "escaped").string()) == "/my cgroups");
    writeFile(tmp / "v1only", "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n");
    CHECK(findCgroup2Root((tmp / "v1only").string()).empty());
    CHECK(findCgroup2Root((tmp / "missing").string()).empty());

    // findProcesses looks in <proc_root>/self/mountinfo when no cgroup root is given.
    const fs::path proc = tmp / "proc";
    const fs::path cg = tmp / "cg";
    fs::create_directories(proc / "self");
    fs::create_directories(cg / "system.slice" / "app.service");
    writeFile(cg / "system.slice" / "app.service" / "cgroup.procs", "42\n");
    writeFile(proc / "self" / "mountinfo", "26 20 0:22 / " + cg.string() + " rw - cgroup2 cgroup2 rw\n");
    std::string error;
    CHECK(find(ProcessSelector::Unit, "app.service", error, proc.string()) == std::vector<pid_t>{42});
    CHECK(error.empty());
    writeFile(proc / "self" / "mountinfo", "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
    CHECK(find(ProcessSelector::Unit, "app.service", error, proc.string()).empty());
    CHECK(error == "no cgroup2 file system is mounted (needed for unit 'app.service')");
}

// --- CpuPercent ----------------------------------------------------------------------

TEST_CASE("proc cpu percent is the counter delta over the injected interval", "[proc]") {
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    CpuPercent cpu;
    CHECK_FALSE(cpu.update(sampleOf(10.0), seconds{1}).has_value());  // nothing to compare with
    CHECK(cpu.update(sampleOf(10.5), seconds{1}).value() == Approx(50.0));
    CHECK(cpu.update(sampleOf(11.0), milliseconds{250}).value() == Approx(200.0));  // two cores
    CHECK(cpu.update(sampleOf(11.0), seconds{10}).value() == Approx(0.0));
    // No time passed: no value, and the sample still becomes the new base.
    CHECK_FALSE(cpu.update(sampleOf(12.0), seconds{0}).has_value());
    CHECK(cpu.update(sampleOf(13.0), seconds{4}).value() == Approx(25.0));

    // Restarted: a new start time, even with a counter that happens to be higher.
    CHECK_FALSE(cpu.update(sampleOf(20.0, 900), seconds{1}).has_value());
    CHECK(cpu.update(sampleOf(20.1, 900), seconds{1}).value() == Approx(10.0));
    // The counter went down (a member of the set was replaced): no value for that interval.
    CHECK_FALSE(cpu.update(sampleOf(5.0, 900), seconds{1}).has_value());
    CHECK(cpu.update(sampleOf(5.2, 900), seconds{2}).value() == Approx(10.0));

    // No process: no value, and the next sample starts over.
    CHECK_FALSE(cpu.update(sampleOf(0.0, 0, 0), seconds{1}).has_value());
    CHECK_FALSE(cpu.update(sampleOf(5.5, 900), seconds{1}).has_value());
    CHECK(cpu.update(sampleOf(6.0, 900), seconds{1}).value() == Approx(50.0));

    cpu.reset();
    CHECK_FALSE(cpu.update(sampleOf(7.0, 900), seconds{1}).has_value());
}

// --- Real processes ------------------------------------------------------------------

TEST_CASE("proc real child shows its memory fds and threads", "[proc]") {
    Hog hog({"--rss-mb", "50", "--fds", "20", "--threads", "3"});
    REQUIRE(hog.ready());

    std::string error;
    const auto by_full_name = find(ProcessSelector::Name, "rollguard-prochog", error);
    CHECK(error.empty());
    CHECK(contains(by_full_name, hog.pid()));
    const auto by_comm = find(ProcessSelector::Name, "rollguard-proch", error);
    CHECK(contains(by_comm, hog.pid()));
    CHECK_FALSE(contains(find(ProcessSelector::Name, "rollguard-procho", error), hog.pid()));

    const ProcessSample s = readProcesses({hog.pid()});
    CHECK(s.error.empty());
    CHECK(s.processes == 1);
    CHECK(s.rss_bytes >= 50.0 * 1024 * 1024);
    CHECK(s.open_fds >= 23);  // stdin, stdout, stderr and the 20 opened
    CHECK(s.fds_unreadable == 0);
    CHECK(s.threads == 4);
    CHECK(s.start_ticks > 0);
    // An epoch time, not seconds since boot; the wall clock here only bounds it from above.
    CHECK(s.start_time_seconds > 1.0e9);
    CHECK(s.start_time_seconds <= static_cast<double>(std::time(nullptr)) + 2.0);

    // The footprint sums over a set: the child and this test process.
    const ProcessSample both = readProcesses({hog.pid(), ::getpid()});
    CHECK(both.processes == 2);
    CHECK(both.rss_bytes > s.rss_bytes);
    CHECK(both.threads >= s.threads + 1);
    CHECK(both.start_ticks <= s.start_ticks);
}

TEST_CASE("proc real pid file finds the child and goes stale when it exits", "[proc]") {
    TempDir tmp;
    auto hog = std::make_unique<Hog>(std::vector<std::string>{});
    REQUIRE(hog->ready());
    const pid_t pid = hog->pid();
    const std::string pid_file = (tmp / "hog.pid").string();
    writeFile(pid_file, std::to_string(pid) + "\n");
    std::string error;
    CHECK(find(ProcessSelector::PidFile, pid_file, error) == std::vector<pid_t>{pid});
    CHECK(error.empty());

    hog.reset();  // killed and reaped
    CHECK(find(ProcessSelector::PidFile, pid_file, error).empty());
    CHECK(error == "stale pid file: " + pid_file + " names pid " + std::to_string(pid) + ", which is not running");

    // A pid read before the exit is skipped by readProcesses, not an error.
    const ProcessSample s = readProcesses({pid, ::getpid()});
    CHECK(s.processes == 1);
    CHECK(s.vanished == 1);
    CHECK(s.error.empty());
}

TEST_CASE("proc busy real child: its cpu time grows and the percent is that over the wall time", "[proc]") {
    // How much CPU a spinning child gets in a fixed time depends on the machine's load, so
    // the test waits until it has used a known amount instead of sleeping a fixed window
    // and asking for a "high" percentage.
    Hog hog({"--busy"});
    REQUIRE(hog.ready());
    CpuPercent cpu;
    const ProcessSample first = readProcesses({hog.pid()});
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(first.processes == 1);
    REQUIRE_FALSE(cpu.update(first, std::chrono::nanoseconds{0}).has_value());
    ProcessSample s;
    REQUIRE(eventually(
        [&] {
            s = readProcesses({hog.pid()});
            return s.cpu_seconds_total - first.cpu_seconds_total >= 0.3;
        },
        std::chrono::seconds{60}));
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
    const auto percent = cpu.update(s, elapsed);
    REQUIRE(percent.has_value());
    const double wall_seconds = std::chrono::duration<double>(elapsed).count();
    CHECK(*percent == Approx((s.cpu_seconds_total - first.cpu_seconds_total) / wall_seconds * 100.0));
    CHECK(*percent > 0.0);
}

namespace {

// A child cgroup of the real cgroup2 hierarchy, removed (after its processes are gone)
// on destruction.
struct ScratchCgroup {
    std::string root;
    std::string name;
    bool created = false;

    ScratchCgroup() {
        root = findCgroup2Root();
        if (root.empty()) {
            return;
        }
        name = "rollguard-test-" + std::to_string(::getpid());
        created = ::mkdir((root + "/" + name).c_str(), 0755) == 0 &&
                  ::mkdir((root + "/" + name + "/inner").c_str(), 0755) == 0;
    }
    ~ScratchCgroup() {
        if (root.empty() || name.empty()) {
            return;
        }
        // A killed process leaves its cgroup a moment after it is reaped.
        eventually([&] { return ::rmdir((root + "/" + name + "/inner").c_str()) == 0 || errno == ENOENT; });
        eventually([&] { return ::rmdir((root + "/" + name).c_str()) == 0 || errno == ENOENT; });
    }
    std::string path(const std::string& sub = "") const { return root + "/" + name + sub; }
};

}  // namespace

TEST_CASE("proc real cgroup finds a child moved into it", "[proc]") {
    ScratchCgroup cgroup;
    if (!cgroup.created) {
        WARN("no writable cgroup2 hierarchy here (root '" + cgroup.root + "'): real cgroup test skipped");
        return;
    }
    Hog hog({});
    REQUIRE(hog.ready());
    std::string error;
    CHECK(find(ProcessSelector::Cgroup, cgroup.name, error).empty());
    CHECK(error.empty());
    // Moving a process is writing its pid to cgroup.procs; it may be refused (delegation).
    const std::string procs = cgroup.path("/inner") + "/cgroup.procs";
    const std::string line = std::to_string(hog.pid()) + "\n";
    const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    const bool moved = fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    const int move_errno = errno;
    if (fd >= 0) {
        ::close(fd);
    }
    if (!moved) {
        WARN("cannot move a process between cgroups here: " + std::string(std::strerror(move_errno)));
        return;
    }
    const auto in_outer = find(ProcessSelector::Cgroup, cgroup.name, error);
    CHECK(error.empty());
    CHECK(in_outer == std::vector<pid_t>{hog.pid()});
    CHECK(find(ProcessSelector::Cgroup, "/" + cgroup.name + "/inner", error) == std::vector<pid_t>{hog.pid()});
    CHECK(readFile("/proc/" + std::to_string(hog.pid()) + "/cgroup").find("0::/" + cgroup.name + "/inner") !=
          std::string::npos);
    const ProcessSample s = readProcesses(in_outer);
    CHECK(s.processes == 1);
}
