#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace rollguard::agent {

/// Which processes a `process` source watches. A plain value type; `value` is
/// interpreted by `kind`:
/// - PidFile: path of a file holding one decimal pid (surrounding whitespace allowed).
/// - Name: an exact command name, matched as `findProcesses` documents (no patterns).
/// - Cgroup: a cgroup v2 path relative to the cgroup2 mount point, e.g.
///   "system.slice/nginx.service" (a leading '/' is allowed, as /proc/<pid>/cgroup
///   prints it; ".." components are refused).
/// - Unit: a systemd system unit name, e.g. "nginx.service"; a name without a '.' gets
///   ".service" appended (as systemctl does). It maps to the cgroup
///   "system.slice/<unit>". User units and units in other slices are reached with Cgroup.
struct ProcessSelector {
    enum Kind { PidFile, Name, Cgroup, Unit };
    Kind kind = Name;
    std::string value;
};

/// The processes `selector` names now, sorted ascending without duplicates.
///
/// - PidFile: the pid read from the file, if `<proc_root>/<pid>` exists. A pid file
///   naming a process that is gone gives the error "stale pid file: ...". A zombie
///   still has its /proc entry and counts as running.
/// - Name: every process whose `<proc_root>/<pid>/comm` equals `value` exactly, OR whose
///   argv[0] (first NUL-terminated field of `<proc_root>/<pid>/cmdline`) has a basename
///   (text after its last '/') equal to `value`. The kernel truncates comm to 15 bytes,
///   so a longer name only matches through argv[0]; a 15-byte prefix of a longer name
///   matches through comm only if the process really is named that (comm is compared
///   whole, never as a prefix). Kernel threads have an empty cmdline and match by comm
///   only. Only processes (thread group leaders) are considered, never single threads.
///   The calling process is not excluded.
/// - Cgroup / Unit: the pids in `cgroup.procs` of that cgroup and of all its descendant
///   cgroups. `cgroup_root` is the cgroup2 mount point; when empty it is found in
///   `<proc_root>/self/mountinfo` (the first cgroup2 mount whose root is "/", else the
///   first cgroup2 mount; this also works on hybrid hosts where it sits at
///   /sys/fs/cgroup/unified).
///
/// Errors (returned empty, `error` set to a one-line message): an empty value, an
/// unreadable or malformed pid file, a stale pid file, a Name containing '/', no cgroup2
/// mount, a cgroup that does not exist or is unreadable, a path with "..". A selector
/// that evaluates fine but matches nothing (no process of that name, an empty cgroup)
/// returns empty with `error` cleared. Processes that vanish while the tree is walked
/// are skipped silently. Never throws (except std::bad_alloc).
///
/// Thread-safety: safe to call concurrently; it only reads the file system.
std::vector<pid_t> findProcesses(const ProcessSelector& selector, std::string& error,
                                 const std::string& proc_root = "/proc", const std::string& cgroup_root = "");

/// The cgroup2 mount point listed in `mountinfo_path` (a /proc/<pid>/mountinfo file), or
/// "" when there is none or the file is unreadable. Mount points are unescaped (\040 is
/// a space). Thread-safe.
std::string findCgroup2Root(const std::string& mountinfo_path = "/proc/self/mountinfo");

/// Resource use of a set of processes at one moment, summed over the processes read.
/// Units are in the field names; all sums are 0 when `processes` is 0.
struct ProcessSample {
    /// Resident set size in bytes (statm's resident pages × page size, else status VmRSS).
    double rss_bytes = 0;
    /// User + system CPU time in seconds ((utime + stime) / CLK_TCK from stat); children
    /// that were waited for are not included.
    double cpu_seconds_total = 0;
    /// Entries of /proc/<pid>/fd, over the processes whose fd directory was readable.
    std::int64_t open_fds = 0;
    /// Threads (stat's num_threads).
    std::int64_t threads = 0;
    /// Processes read successfully.
    std::int64_t processes = 0;
    /// Start of the earliest process, in seconds since the Unix epoch (boot time from
    /// `<proc_root>/stat` btime + stat's starttime / CLK_TCK); seconds since boot if btime
    /// cannot be read. 0 when no process was read.
    double start_time_seconds = 0;
    /// Start of the earliest process in clock ticks since boot (stat's starttime). Unlike
    /// `start_time_seconds` it does not move when the wall clock is stepped, so restart
    /// detection uses it.
    std::uint64_t start_ticks = 0;
    /// Processes counted above whose fd directory could not be listed (typically
    /// "Permission denied" for another user's process when not root); their fds are
    /// missing from `open_fds`.
    std::int64_t fds_unreadable = 0;
    /// Pids skipped because they no longer existed when read (not an error).
    std::int64_t vanished = 0;
    /// Pids skipped because their stat/statm/status could not be read or parsed for a
    /// reason other than vanishing; `error` holds the first such message.
    std::int64_t unreadable = 0;
    std::string error;
};

/// Reads and sums the resource use of `pids` from `<proc_root>/<pid>/{stat,statm,status,fd}`.
/// stat is parsed from its last ')' so a command name holding spaces or ") (" cannot
/// shift the fields. A process is counted whole or not at all: a pid that vanishes while
/// read is skipped and counted in `vanished`. Never throws (except std::bad_alloc).
///
/// Cost: one directory listing of fd/ per process (O(open fds)) plus three small reads.
/// Thread-safety: safe to call concurrently; it only reads the file system.
ProcessSample readProcesses(const std::vector<pid_t>& pids, const std::string& proc_root = "/proc");

/// CPU use between consecutive samples of the same selector, in percent of one core
/// (100 = one core fully busy; a multi-threaded process can exceed 100).
///
/// The caller measures the elapsed time between the samples with its own clock and
/// passes it in, so tests control time. Not thread-safe: one instance per watched
/// target, used from one thread.
class CpuPercent {
public:
    /// Feeds `sample`, taken `elapsed` after the previously fed one, and returns the CPU
    /// percentage over that interval: (Δ cpu_seconds_total / elapsed seconds) × 100.
    /// Returns nullopt, and starts over from `sample`, when there is no previous sample,
    /// `elapsed` is not positive, either sample has no process, the start ticks changed
    /// (the process was restarted) or the CPU counter went down (a process of the set
    /// exited or was replaced).
    std::optional<double> update(const ProcessSample& sample, std::chrono::nanoseconds elapsed);

    /// Forgets the previous sample; the next `update` returns nullopt.
    void reset() { previous_.reset(); }

private:
    struct Previous {
        double cpu_seconds_total;
        std::uint64_t start_ticks;
    };
    std::optional<Previous> previous_;
};

}  // namespace rollguard::agent
