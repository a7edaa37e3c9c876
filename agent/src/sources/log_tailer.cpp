#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "rollguard/agent/log_source.h"

// Limitations, on purpose for now:
//  - globs are glob(3) patterns (*, ?, [..], {a,b}); `**` is not recursive.
//  - a copytruncate that is followed by more writes than were read before we look
//    (size back above our offset) cannot be told from an append; inotify's IN_MODIFY
//    on the truncate usually wakes us before that.
//  - a rotated file is drained when the rotation is seen and once more at the next
//    rescan, then closed; a writer still appending to it after that loses those lines.

namespace rollguard::agent {

namespace {

constexpr std::size_t kReadChunk = 256 * 1024;
// In the thread, one file gets at most this many chunks per wake-up so a file written
// faster than we parse cannot starve the others or stop(); the loop comes straight back.
constexpr int kMaxChunksPerWake = 64;

constexpr std::uint32_t kFileMask = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;
constexpr std::uint32_t kDirMask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR;

bool isBlank(std::string_view line) {
    for (const char c : line) {
        if (c != ' ' && c != '\t' && c != '\r') {
            return false;
        }
    }
    return true;
}

bool hasGlobChars(std::string_view s) { return s.find_first_of("*?[{") != std::string_view::npos; }

std::string parentOf(const std::string& pattern) {
    const auto slash = pattern.rfind('/');
    if (slash == std::string::npos) {
        return ".";
    }
    if (slash == 0) {
        return "/";
    }
    return pattern.substr(0, slash);
}

std::vector<std::string> expandGlob(const std::string& pattern, int extra_flags) {
    std::vector<std::string> out;
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), GLOB_NOSORT | GLOB_BRACE | extra_flags, nullptr, &g);
    if (rc == 0) {
        for (std::size_t i = 0; i < g.gl_pathc; ++i) {
            out.emplace_back(g.gl_pathv[i]);
        }
    }
    ::globfree(&g);
    return out;
}

}  // namespace

/// One file being followed: its descriptor, identity, read offset and partial line.
struct FollowedFile {
    std::string path;
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t offset = 0;
    std::string pending;    // bytes of a line whose newline has not arrived yet
    bool skipping = false;  // dropping bytes up to the next newline (too long, or mid-line start)
    int wd = -1;            // inotify watch, or -1
    bool dirty = false;     // inotify said it changed
    std::uint64_t draining_since = 0;  // rescan generation it was rotated away in; 0: live
};

struct LogTailer::Impl {
    Impl(const LogSourceConfig& config, IntervalRecorder& recorder, LogSourceCounters& counters)
        : config_(config),
          recorder_(recorder),
          counters_(counters),
          parser_(config),
          batch_(recorder.settings()),
          buffer_(kReadChunk) {}
    ~Impl();

    const LogSourceConfig& config_;
    IntervalRecorder& recorder_;
    LogSourceCounters& counters_;
    LineParser parser_;
    IntervalStats batch_;
    std::vector<char> buffer_;

    // Plain counts for the chunk being processed; published to the atomics once per chunk.
    struct Local {
        std::uint64_t lines = 0;
        std::uint64_t bad[4] = {0, 0, 0, 0};
    } local_;

    std::vector<std::unique_ptr<FollowedFile>> files_;  // live and draining
    bool initial_scan_done_ = false;
    std::uint64_t generation_ = 0;

    int inotify_fd_ = -1;
    int wake_fd_ = -1;
    std::vector<int> dir_wds_;
    std::thread thread_;
    std::atomic<bool> stop_requested_{false};
    bool running_ = false;

    mutable std::mutex paths_mutex_;
    std::vector<std::string> paths_;  // copy of the live paths for files()

    void rescan();
    void watchDirectories();
    void openFile(const std::string& path, bool initial);
    /// `finished`: the writer is done with it (rotated or deleted), so a last line without
    /// a newline is counted; otherwise it is dropped with the descriptor.
    void closeFile(FollowedFile& f, bool finished);
    /// Reads what is available; returns true when it stopped at max_chunks with more left.
    bool readFile(FollowedFile& f, int max_chunks);
    bool readAll(int max_chunks);
    void process(FollowedFile& f, const char* data, std::size_t n);
    void handleLine(std::string_view line);
    void tooLong();
    void flush();
    void publishPaths();
    void run();
    void handleInotify(bool& rescan_needed);
};

LogTailer::Impl::~Impl() {
    for (auto& f : files_) {
        closeFile(*f, false);
    }
    if (inotify_fd_ >= 0) {
        ::close(inotify_fd_);
    }
    if (wake_fd_ >= 0) {
        ::close(wake_fd_);
    }
}

void LogTailer::Impl::tooLong() {
    ++local_.lines;
    ++local_.bad[static_cast<int>(BadLineReason::TooLong)];
}

void LogTailer::Impl::handleLine(std::string_view line) {
    if (line.size() > config_.max_line_bytes) {
        tooLong();
        return;
    }
    ++local_.lines;
    // A blank line is a line seen but neither an event nor bad: writers emit them on
    // flushes and restarts, and they carry nothing.
    if (line.empty() || ((line.front() == ' ' || line.front() == '\t' || line.front() == '\r') && isBlank(line))) {
        return;
    }
    const ParsedLine p = parser_.parse(line);
    if (!p.ok) {
        ++local_.bad[static_cast<int>(p.reason)];
        return;
    }
    ++batch_.events;
    if (p.error) {
        ++batch_.errors;
    }
    if (p.latency_seconds >= 0) {
        batch_.latency.record(recorder_.toUnits(p.latency_seconds));
    }
}

void LogTailer::Impl::process(FollowedFile& f, const char* data, std::size_t n) {
    const char* p = data;
    const char* end = data + n;
    while (p < end) {
        const auto* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
        if (nl == nullptr) {
            const auto rest = static_cast<std::size_t>(end - p);
            if (f.skipping) {
                return;
            }
            if (f.pending.size() + rest > config_.max_line_bytes) {
                // Count it now and drop what we hold: memory stays bounded by max_line_bytes.
                tooLong();
                f.pending.clear();
                f.pending.shrink_to_fit();
                f.skipping = true;
                return;
            }
            f.pending.append(p, rest);
            return;
        }
        const std::string_view segment(p, static_cast<std::size_t>(nl - p));
        p = nl + 1;
        if (f.skipping) {
            f.skipping = false;
            continue;
        }
        if (f.pending.empty()) {
            handleLine(segment);
        } else if (f.pending.size() + segment.size() > config_.max_line_bytes) {
            tooLong();
            f.pending.clear();
        } else {
            f.pending.append(segment);
            handleLine(f.pending);
            f.pending.clear();
        }
    }
}

void LogTailer::Impl::flush() {
    if (batch_.events > 0) {
        recorder_.recordBatch(batch_);
        batch_.reset();
    }
    counters_.lines.fetch_add(local_.lines, std::memory_order_relaxed);
    counters_.bad_invalid_json.fetch_add(local_.bad[static_cast<int>(BadLineReason::InvalidJson)],
                                         std::memory_order_relaxed);
    counters_.bad_not_object.fetch_add(local_.bad[static_cast<int>(BadLineReason::NotAnObject)],
                                       std::memory_order_relaxed);
    counters_.bad_latency.fetch_add(local_.bad[static_cast<int>(BadLineReason::BadLatency)],
                                    std::memory_order_relaxed);
    counters_.bad_too_long.fetch_add(local_.bad[static_cast<int>(BadLineReason::TooLong)],
                                     std::memory_order_relaxed);
    local_ = Local{};
}

bool LogTailer::Impl::readFile(FollowedFile& f, int max_chunks) {
    if (f.fd < 0) {
        return false;
    }
    int chunks = 0;
    while (true) {
        if (max_chunks > 0 && chunks >= max_chunks) {
            return true;
        }
        const ssize_t n = ::pread(f.fd, buffer_.data(), buffer_.size(), f.offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            counters_.read_errors.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("source {}: read {}: {}", config_.name, f.path, std::strerror(errno));
            return false;
        }
        if (n == 0) {
            struct stat st {};
            if (::fstat(f.fd, &st) == 0 && st.st_size < f.offset) {
                // copytruncate (or any truncation): what we held belongs to the old content.
                counters_.truncations.fetch_add(1, std::memory_order_relaxed);
                spdlog::info("source {}: {} truncated, reading from its start", config_.name, f.path);
                f.offset = 0;
                f.pending.clear();
                f.skipping = false;
                continue;
            }
            return false;
        }
        ++chunks;
        f.offset += n;
        counters_.bytes.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
        process(f, buffer_.data(), static_cast<std::size_t>(n));
        flush();
        if (static_cast<std::size_t>(n) < buffer_.size()) {
            return false;  // short read: at EOF for now
        }
    }
}

bool LogTailer::Impl::readAll(int max_chunks) {
    bool more = false;
    for (auto& f : files_) {
        more = readFile(*f, max_chunks) || more;
        f->dirty = false;
    }
    return more;
}

void LogTailer::Impl::closeFile(FollowedFile& f, bool finished) {
    if (f.fd < 0) {
        return;
    }
    // A rotated file's last bytes without a newline are all there will ever be, so they
    // are a line (a torn write shows up as invalid JSON).
    if (finished && !f.pending.empty() && !f.skipping) {
        handleLine(f.pending);
        flush();
    }
    f.pending.clear();
    if (f.wd >= 0 && inotify_fd_ >= 0) {
        ::inotify_rm_watch(inotify_fd_, f.wd);  // may fail if the inode is gone: harmless
    }
    f.wd = -1;
    ::close(f.fd);
    f.fd = -1;
}

void LogTailer::Impl::openFile(const std::string& path, bool initial) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno != ENOENT) {
            counters_.read_errors.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("source {}: open {}: {}", config_.name, path, std::strerror(errno));
        }
        return;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return;
    }
    // The path may have been replaced between stat and open: identity comes from fstat.
    for (const auto& f : files_) {
        if (f->fd >= 0 && f->dev == st.st_dev && f->ino == st.st_ino) {
            ::close(fd);
            return;
        }
    }
    auto f = std::make_unique<FollowedFile>();
    f->path = path;
    f->fd = fd;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    if (initial && config_.read_from == ReadFrom::End && st.st_size > 0) {
        f->offset = st.st_size;
        // Starting inside a line would turn its tail into a bad line: skip to its end.
        char last = '\n';
        if (::pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') {
            f->skipping = true;
        }
    }
    if (inotify_fd_ >= 0) {
        f->wd = ::inotify_add_watch(inotify_fd_, path.c_str(), kFileMask);
    }
    counters_.files_opened.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("source {}: following {} from offset {}", config_.name, path, static_cast<long long>(f->offset));
    files_.push_back(std::move(f));
}

void LogTailer::Impl::watchDirectories() {
    if (inotify_fd_ < 0) {
        return;
    }
    for (const auto& pattern : config_.paths) {
        const std::string parent = parentOf(pattern);
        std::vector<std::string> dirs;
        if (hasGlobChars(parent)) {
            dirs = expandGlob(parent, GLOB_ONLYDIR);
        } else {
            dirs.push_back(parent);
        }
        for (const auto& dir : dirs) {
            // Re-adding an existing watch returns the same descriptor, so this is idempotent
            // and picks up directories that appeared since the last rescan.
            const int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), kDirMask);
            if (wd >= 0 && std::find(dir_wds_.begin(), dir_wds_.end(), wd) == dir_wds_.end()) {
                dir_wds_.push_back(wd);
            }
        }
    }
}

void LogTailer::Impl::rescan() {
    const bool initial = !initial_scan_done_;
    initial_scan_done_ = true;
    ++generation_;
    watchDirectories();

    // Files rotated away at an earlier rescan: a last drain for writers that had not
    // reopened yet, then close.
    for (auto& f : files_) {
        if (f->draining_since != 0 && f->draining_since < generation_) {
            readFile(*f, 0);
            closeFile(*f, true);
        }
    }
    files_.erase(std::remove_if(files_.begin(), files_.end(), [](const auto& f) { return f->fd < 0; }),
                 files_.end());

    struct Match {
        std::string path;
        dev_t dev;
        ino_t ino;
        bool claimed = false;
    };
    std::vector<Match> matches;
    for (const auto& pattern : config_.paths) {
        for (auto& path : expandGlob(pattern, 0)) {
            struct stat st {};
            if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
                continue;
            }
            const bool dup = std::any_of(matches.begin(), matches.end(), [&](const Match& m) {
                return m.path == path || (m.dev == st.st_dev && m.ino == st.st_ino);
            });
            if (!dup) {
                matches.push_back(Match{std::move(path), st.st_dev, st.st_ino});
            }
        }
    }

    for (auto& f : files_) {
        auto same_inode = [&](const Match& m) { return m.dev == f->dev && m.ino == f->ino; };
        auto it = std::find_if(matches.begin(), matches.end(), same_inode);
        if (f->draining_since != 0) {
            if (it != matches.end()) {
                it->claimed = true;  // never reopen a file we are draining
            }
            continue;
        }
        if (it != matches.end()) {
            it->claimed = true;
            if (it->path != f->path) {
                f->path = it->path;  // renamed within the globs: same file, keep going
            }
            continue;
        }
        // The file left its path: rotated (renamed or replaced) or deleted. Take what is
        // there now; the rest at the next rescan.
        struct stat st {};
        const bool still_linked = ::fstat(f->fd, &st) == 0 && st.st_nlink > 0;
        const bool replaced = std::any_of(matches.begin(), matches.end(),
                                          [&](const Match& m) { return m.path == f->path; });
        if (still_linked || replaced) {
            counters_.rotations.fetch_add(1, std::memory_order_relaxed);
            spdlog::info("source {}: {} rotated", config_.name, f->path);
        }
        readFile(*f, 0);
        f->draining_since = generation_;
    }

    for (const auto& m : matches) {
        if (!m.claimed) {
            openFile(m.path, initial);
        }
    }
    publishPaths();
}

void LogTailer::Impl::publishPaths() {
    std::vector<std::string> live;
    for (const auto& f : files_) {
        if (f->draining_since == 0) {
            live.push_back(f->path);
        }
    }
    std::lock_guard<std::mutex> lock(paths_mutex_);
    paths_ = std::move(live);
}

void LogTailer::Impl::handleInotify(bool& rescan_needed) {
    alignas(inotify_event) char buf[16 * 1024];
    while (true) {
        const ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
        if (n <= 0) {
            return;  // EAGAIN: drained
        }
        for (ssize_t off = 0; off < n;) {
            inotify_event ev{};
            std::memcpy(&ev, buf + off, sizeof ev);
            off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
            if ((ev.mask & IN_Q_OVERFLOW) != 0 ||
                std::find(dir_wds_.begin(), dir_wds_.end(), ev.wd) != dir_wds_.end()) {
                rescan_needed = true;
                continue;
            }
            if ((ev.mask & (IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF)) != 0) {
                rescan_needed = true;
            }
            for (auto& f : files_) {
                if (f->wd == ev.wd) {
                    f->dirty = true;
                }
            }
        }
    }
}

void LogTailer::Impl::run() {
    using Clock = std::chrono::steady_clock;
    const auto interval = std::max<std::chrono::nanoseconds>(config_.poll_interval, std::chrono::milliseconds{10});
    auto next_rescan = Clock::now() + interval;
    bool more = true;  // start() scanned; the first read happens here, not on the caller
    try {
        while (!stop_requested_.load(std::memory_order_acquire)) {
            int timeout_ms = 0;
            if (!more) {
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(next_rescan - Clock::now());
                timeout_ms = static_cast<int>(std::max<std::int64_t>(0, left.count()));
            }
            pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
            const nfds_t nfds = inotify_fd_ >= 0 ? 2 : 1;
            const int rc = ::poll(fds, nfds, timeout_ms);
            if (rc < 0 && errno != EINTR) {
                counters_.read_errors.fetch_add(1, std::memory_order_relaxed);
                spdlog::warn("source {}: poll: {}", config_.name, std::strerror(errno));
            }
            if (stop_requested_.load(std::memory_order_acquire)) {
                break;
            }
            bool rescan_needed = Clock::now() >= next_rescan;
            if (inotify_fd_ >= 0 && rc > 0 && (fds[1].revents & POLLIN) != 0) {
                handleInotify(rescan_needed);
            }
            if (rescan_needed) {
                rescan();
                next_rescan = Clock::now() + interval;
                more = readAll(kMaxChunksPerWake);
                continue;
            }
            const bool had_more = more;
            more = false;
            for (auto& f : files_) {
                // A file that hit the per-wake cap has more waiting even without an event.
                if (f->dirty || f->draining_since != 0 || had_more) {
                    f->dirty = false;
                    more = readFile(*f, kMaxChunksPerWake) || more;
                }
            }
        }
        readAll(0);
    } catch (const std::exception& e) {
        // Only allocation failure can get here; the thread ends rather than the process.
        counters_.read_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("source {}: tailer stopped: {}", config_.name, e.what());
    }
}

LogTailer::LogTailer(LogSourceConfig config, IntervalRecorder& recorder)
    : config_(std::move(config)), recorder_(recorder), impl_(std::make_unique<Impl>(config_, recorder_, counters_)) {}

LogTailer::~LogTailer() { stop(); }

void LogTailer::start() {
    Impl& im = *impl_;
    if (im.running_) {
        return;
    }
    if (im.wake_fd_ < 0) {
        im.wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (im.wake_fd_ < 0) {
            spdlog::warn("source {}: eventfd: {}", config_.name, std::strerror(errno));
        }
    }
    if (im.inotify_fd_ < 0) {
        im.inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (im.inotify_fd_ < 0) {
            spdlog::warn("source {}: inotify unavailable ({}), polling every {} ms", config_.name,
                         std::strerror(errno),
                         std::chrono::duration_cast<std::chrono::milliseconds>(config_.poll_interval).count());
        } else {
            // Files opened by an earlier pollOnce() get their watches now.
            for (auto& f : im.files_) {
                if (f->fd >= 0 && f->wd < 0) {
                    f->wd = ::inotify_add_watch(im.inotify_fd_, f->path.c_str(), kFileMask);
                }
            }
        }
    }
    // Watches first, then the scan: a file created in between is seen either way.
    im.watchDirectories();
    im.rescan();
    im.stop_requested_.store(false, std::memory_order_release);
    im.thread_ = std::thread([&im] { im.run(); });
    im.running_ = true;
}

void LogTailer::stop() {
    Impl& im = *impl_;
    if (!im.running_) {
        return;
    }
    im.stop_requested_.store(true, std::memory_order_release);
    if (im.wake_fd_ >= 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t w = ::write(im.wake_fd_, &one, sizeof one);
    }
    im.thread_.join();
    im.running_ = false;
}

void LogTailer::pollOnce() {
    impl_->rescan();
    impl_->readAll(0);
}

std::vector<std::string> LogTailer::files() const {
    std::lock_guard<std::mutex> lock(impl_->paths_mutex_);
    return impl_->paths_;
}

}  // namespace rollguard::agent
