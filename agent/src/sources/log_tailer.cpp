#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "rollguard/agent/log_source.h"

// What the tailer can and cannot see (see also LogTailer's doc comment):
//  - A copytruncate followed by more writes than were read before we look (size back
//    above our offset) cannot be told from an append by size alone. inotify's IN_MODIFY
//    on the truncate usually wakes us first; failing that, each rescan re-hashes the
//    bytes just before the committed offset and a mismatch restarts the file at 0
//    (identity_changes). What the writer wrote between our last read and the truncate
//    is lost either way: that is the copytruncate window.
//  - Inode reuse cannot happen to a file we follow: our descriptor keeps the inode
//    alive, including through rotate_wait. Once we close it, a new file that gets the
//    same inode is a new file to us and is read from its start. Across a restart the
//    checkpoint's fingerprint tells a reused inode from the old file, except when the
//    new file has the very same bytes before the offset (same content: harmless).
//  - `**` does not descend into symlinked directories (no loops); symlinked files are
//    followed, and so are symlinks in literal or single-level glob components.

namespace rollguard::agent {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 256 * 1024;
// In the thread, one file gets at most this many chunks per wake-up so a file written
// faster than we parse cannot starve the others or stop(); the loop comes straight back.
constexpr int kMaxChunksPerWake = 64;
// How many bytes before the committed offset identify a file's content.
constexpr std::size_t kFingerprintBytes = 256;
// A checkpoint claiming a longer fingerprint is not one we wrote: treated as a mismatch.
constexpr std::uint32_t kMaxRestoredFingerprint = 64 * 1024;
// `**` stops descending below this many directories (pathological trees, bind loops).
constexpr int kMaxGlobDepth = 64;

constexpr std::uint32_t kFileMask = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;
constexpr std::uint32_t kDirMask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR;

constexpr std::uint64_t kFnvBasis = 14695981039346656037ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;

std::uint64_t fnv1a(std::uint64_t h, const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        h ^= static_cast<unsigned char>(p[i]);
        h *= kFnvPrime;
    }
    return h;
}

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

std::vector<std::string> splitGlobComponents(std::string_view path) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < path.size()) {
        const std::size_t slash = path.find('/', i);
        const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
        if (end > i) {
            out.emplace_back(path.substr(i, end - i));
        }
        i = end + 1;
    }
    return out;
}

bool hasDoubleStar(const std::string& pattern) {
    for (const auto& c : splitGlobComponents(pattern)) {
        if (c == "**") {
            return true;
        }
    }
    return false;
}

std::string joinPath(const std::string& dir, const char* name) {
    if (dir.empty()) {
        return name;
    }
    if (dir == "/") {
        return "/" + std::string(name);
    }
    return dir + "/" + name;
}

/// Expands a pattern with `**` components: `*`, `?`, `[..]` per component through
/// fnmatch(3) (a leading dot is not special), `**` for zero or more directories.
/// Directories are read only where a component has wildcards. Collects the directories
/// in which a new entry could make a new match, for inotify.
class RecursiveGlob {
public:
    RecursiveGlob(const std::string& pattern, std::vector<std::string>& out, std::vector<std::string>& dirs)
        : comps_(splitGlobComponents(pattern)), out_(out), dirs_(dirs) {
        root_ = !pattern.empty() && pattern.front() == '/' ? "/" : "";
    }

    void run() { walk(root_, 0, 0); }

private:
    std::vector<std::string> comps_;
    std::vector<std::string>& out_;
    std::vector<std::string>& dirs_;
    std::string root_;

    static bool isRealDir(const std::string& path, unsigned char type) {
        if (type == DT_DIR) {
            return true;
        }
        if (type != DT_UNKNOWN) {
            return false;  // DT_LNK included: `**` does not follow directory symlinks
        }
        struct stat st {};
        return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }

    void watch(const std::string& dir) { dirs_.push_back(dir.empty() ? "." : dir); }

    void walk(const std::string& dir, std::size_t i, int depth) {
        if (i == comps_.size()) {
            out_.push_back(dir);
            return;
        }
        const std::string& comp = comps_[i];
        const bool last = i + 1 == comps_.size();
        if (comp == "**") {
            walk(dir, i + 1, depth);  // zero directories
            if (depth >= kMaxGlobDepth) {
                return;
            }
            watch(dir);
            forEachEntry(dir, [&](const std::string& child, const char*, unsigned char type) {
                if (isRealDir(child, type)) {
                    walk(child, i, depth + 1);
                } else if (last) {
                    out_.push_back(child);  // a trailing `**` also matches the file names
                }
            });
            return;
        }
        if (!hasGlobChars(comp)) {
            if (last) {
                watch(dir);
            }
            walk(joinPath(dir, comp.c_str()), i + 1, depth);
            return;
        }
        watch(dir);
        forEachEntry(dir, [&](const std::string& child, const char* name, unsigned char) {
            if (::fnmatch(comp.c_str(), name, 0) == 0) {
                if (last) {
                    out_.push_back(child);
                } else {
                    walk(child, i + 1, depth);
                }
            }
        });
    }

    template <typename F>
    static void forEachEntry(const std::string& dir, F&& f) {
        DIR* d = ::opendir(dir.empty() ? "." : dir.c_str());
        if (d == nullptr) {
            return;
        }
        while (const dirent* e = ::readdir(d)) {
            if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) {
                continue;
            }
            f(joinPath(dir, e->d_name), e->d_name, e->d_type);
        }
        ::closedir(d);
    }
};

/// A compiled exclude pattern. With a '/' it is matched against the whole path, one
/// component at a time (`**` = zero or more components); without one, against the
/// file name only, so `*.gz` excludes compressed rotations anywhere.
struct ExcludePattern {
    bool absolute = false;
    bool name_only = false;
    std::vector<std::string> comps;

    explicit ExcludePattern(const std::string& pattern)
        : absolute(!pattern.empty() && pattern.front() == '/'),
          name_only(pattern.find('/') == std::string::npos),
          comps(splitGlobComponents(pattern)) {}

    bool matches(const std::string& path, const std::vector<std::string>& path_comps) const {
        if (name_only) {
            return !comps.empty() && !path_comps.empty() && ::fnmatch(comps[0].c_str(), path_comps.back().c_str(), 0) == 0;
        }
        if (absolute != (!path.empty() && path.front() == '/')) {
            return false;
        }
        return match(0, path_comps, 0);
    }

private:
    bool match(std::size_t pi, const std::vector<std::string>& path, std::size_t si) const {
        if (pi == comps.size()) {
            return si == path.size();
        }
        if (comps[pi] == "**") {
            for (std::size_t k = si; k <= path.size(); ++k) {
                if (match(pi + 1, path, k)) {
                    return true;
                }
            }
            return false;
        }
        if (si == path.size() || ::fnmatch(comps[pi].c_str(), path[si].c_str(), 0) != 0) {
            return false;
        }
        return match(pi + 1, path, si + 1);
    }
};

}  // namespace

/// One file being followed: its descriptor, identity, read offset and partial line.
struct FollowedFile {
    std::string path;
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t offset = 0;               // next byte to read
    std::uint64_t committed = 0;    // end of the last complete line consumed
    std::uint64_t fingerprint = 0;  // of the fingerprint_bytes bytes before `committed`
    std::uint32_t fingerprint_bytes = 0;
    std::array<char, kFingerprintBytes> tail{};  // the last bytes read, ending at `offset`
    std::size_t tail_len = 0;
    std::string pending;    // bytes of a line whose newline has not arrived yet
    bool skipping = false;  // dropping bytes up to the next newline (too long, or mid-line start)
    int wd = -1;            // inotify watch, or -1
    bool dirty = false;     // inotify said it changed
    bool draining = false;  // rotated away: read for late lines until rotate_wait of quiet
    Clock::time_point quiet_since{};  // while draining: rotation seen, or the last data read
};

struct LogTailer::Impl {
    Impl(const LogSourceConfig& config, IntervalRecorder& recorder, LogSourceCounters& counters)
        : config_(config),
          recorder_(recorder),
          counters_(counters),
          parser_(config),
          batch_(recorder.settings()),
          labels_(config.labels.size(), config.max_label_sets),
          keyed_mode_(!config.labels.empty() || config.time == TimeMode::Event),
          event_time_(config.time == TimeMode::Event),
          buffer_(kReadChunk) {
        for (const auto& e : config_.exclude) {
            excludes_.emplace_back(e);
        }
    }
    ~Impl();

    const LogSourceConfig& config_;
    IntervalRecorder& recorder_;
    LogSourceCounters& counters_;
    LineParser parser_;
    IntervalStats batch_;  // stream 0, arrival time
    LabelSetTable labels_;
    StreamRouter router_;
    std::vector<std::vector<std::uint32_t>> routes_;  // per label-set id: further streams
    KeyedBatch keyed_;       // other streams and event-time buckets
    bool keyed_mode_;        // labels or event time configured
    bool event_time_;
    std::int64_t bucket_ns_ = 1'000'000'000;
    std::vector<char> buffer_;
    std::vector<ExcludePattern> excludes_;
    SourcePositions positions_;  // reused: recorded with every batch

    // Plain counts for the chunk being processed; published to the atomics once per chunk.
    struct Local {
        std::uint64_t lines = 0;
        std::uint64_t bad[kBadLineReasons] = {};
        std::uint64_t label_overflow = 0;
    } local_;

    static constexpr std::chrono::milliseconds kCoalesce{10};
    std::chrono::steady_clock::time_point last_read_{};

    // Bad lines are logged as samples: at most one every kBadLineLogInterval per source,
    // with how many went unlogged since, so a flood of garbage cannot flood the journal.
    static constexpr std::chrono::seconds kBadLineLogInterval{10};
    std::optional<std::chrono::steady_clock::time_point> last_bad_log_;
    std::uint64_t bad_unlogged_ = 0;
    void sampleBadLine(BadLineReason reason, std::string_view line);

    std::vector<std::unique_ptr<FollowedFile>> files_;  // live and draining
    bool initial_scan_done_ = false;

    // From restore(), applied at the next rescan and then dropped.
    SourcePositions restore_;
    std::vector<bool> restore_used_;  // one position resumes one file
    bool restore_pending_ = false;
    bool restore_had_positions_ = false;  // then files it does not know are new: from 0

    int inotify_fd_ = -1;
    int wake_fd_ = -1;
    std::vector<int> dir_wds_;
    std::thread thread_;
    std::atomic<bool> stop_requested_{false};
    bool running_ = false;

    mutable std::mutex paths_mutex_;
    std::vector<std::string> paths_;     // copy of the live paths for files()
    std::vector<std::string> draining_;  // copy of the draining paths for rotatedFiles()

    void rescan();
    /// Expands every pattern (minus excludes) into existing regular files; adds inotify
    /// watches on the directories that matter. Returns true when a new watch was added.
    bool expand(std::vector<std::string>& out);
    bool addDirWatch(const std::string& dir);
    void watchTargetDir(const std::string& path);
    bool excluded(const std::string& path) const;
    void openFile(const std::string& path, bool initial);
    /// Applies a restored position to a file just opened; false when none applies.
    bool applyRestore(FollowedFile& f, const struct stat& st);
    /// Re-hashes the bytes before the committed offset; restarts the file when they changed.
    void verifyIdentity(FollowedFile& f);
    /// `finished`: the writer is done with it (rotated or deleted), so a last line without
    /// a newline is counted; otherwise it is dropped with the descriptor.
    void closeFile(FollowedFile& f, bool finished);
    /// Closes draining files quiet for rotate_wait (after a last read); true if any closed.
    bool expireDraining(Clock::time_point now);
    /// The earliest time a draining file may expire, or time_point::max().
    Clock::time_point nextExpiry() const;
    void removeClosed();
    /// Reads what is available; returns true when it stopped at max_chunks with more left.
    bool readFile(FollowedFile& f, int max_chunks);
    bool scanned_once_ = false;  // pollSome() scans the globs on its first call only
    bool readAll(int max_chunks);
    void process(FollowedFile& f, const char* data, std::size_t n);
    /// After a chunk [start, start + n): moves the committed offset past its last newline
    /// and updates the fingerprint and the tail.
    void advanceCommitted(FollowedFile& f, const char* data, std::size_t n, off_t start);
    void resetToStart(FollowedFile& f);
    /// Loads the bytes before f.offset into the tail (after open at end, or a resume).
    void loadTail(FollowedFile& f);
    void handleLine(std::string_view line);
    void handleKeyed(const ParsedLine& p);
    /// Counts a line; false when it is too long or blank (nothing more to do with it).
    bool countLine(std::string_view line);
    void recordParsed(std::string_view line, const ParsedLine& p);
    void tooLong();
    void flush();
    void buildPositions();
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

void LogTailer::Impl::sampleBadLine(BadLineReason reason, std::string_view line) {
    const auto now = std::chrono::steady_clock::now();
    if (last_bad_log_ && now - *last_bad_log_ < kBadLineLogInterval) {
        ++bad_unlogged_;
        return;
    }
    last_bad_log_ = now;
    // An excerpt safe for any log sink: printable ASCII kept, everything else escaped.
    std::string excerpt;
    for (const char c : line.substr(0, 160)) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7F) {
            excerpt.push_back(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\x%02x", u);
            excerpt += buf;
        }
    }
    if (line.size() > 160) {
        excerpt += "...";
    }
    spdlog::warn("source {}: skipped a bad line ({}): {}{}", config_.name, toString(reason), excerpt,
                 bad_unlogged_ > 0 ? fmt::format(" ({} more bad lines since the last sample)", bad_unlogged_)
                                   : std::string());
    bad_unlogged_ = 0;
}

void LogTailer::Impl::tooLong() {
    ++local_.lines;
    ++local_.bad[static_cast<int>(BadLineReason::TooLong)];
    sampleBadLine(BadLineReason::TooLong, "(a line longer than max_line_bytes)");
}

bool LogTailer::Impl::countLine(std::string_view line) {
    if (line.size() > config_.max_line_bytes) {
        tooLong();
        return false;
    }
    ++local_.lines;
    // A blank line is a line seen but neither an event nor bad: writers emit them on
    // flushes and restarts, and they carry nothing.
    return !(line.empty() || ((line.front() == ' ' || line.front() == '\t' || line.front() == '\r') && isBlank(line)));
}

void LogTailer::Impl::handleLine(std::string_view line) {
    if (countLine(line)) {
        recordParsed(line, parser_.parse(line));
    }
}

void LogTailer::Impl::recordParsed(std::string_view line, const ParsedLine& p) {
    if (!p.ok) {
        ++local_.bad[static_cast<int>(p.reason)];
        sampleBadLine(p.reason, line);
        return;
    }
    if (keyed_mode_) {
        handleKeyed(p);
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

void LogTailer::Impl::handleKeyed(const ParsedLine& p) {
    const std::vector<std::uint32_t>* routes = nullptr;
    if (!p.labels.empty()) {
        bool overflowed = false;
        bool created = false;
        const std::uint32_t id = labels_.intern(p.labels, overflowed, created);
        if (overflowed) {
            ++local_.label_overflow;
        }
        if (created) {
            // Matching happens once per label set; every later line reuses the answer.
            routes_.emplace_back();
            if (router_) {
                router_(labels_.labels(id), routes_.back());
            }
        }
        routes = &routes_[id];
    }
    const std::int64_t units = p.latency_seconds >= 0 ? recorder_.toUnits(p.latency_seconds) : -1;
    std::optional<std::int64_t> bucket;
    if (event_time_) {
        const std::int64_t t = *p.event_time_ns;
        std::int64_t q = t / bucket_ns_;
        if (t % bucket_ns_ < 0) {
            --q;  // floor, also before 1970
        }
        bucket = q * bucket_ns_;
        keyed_.add(0, bucket, units, p.error);
    } else {
        ++batch_.events;
        if (p.error) {
            ++batch_.errors;
        }
        if (units >= 0) {
            batch_.latency.record(units);
        }
    }
    if (routes != nullptr) {
        for (const std::uint32_t stream : *routes) {
            keyed_.add(stream, bucket, units, p.error);
        }
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
            // Every complete line from here to the chunk's last newline goes through the
            // parser's batch path at once (iterate_many over many lines).
            const auto* last_nl = static_cast<const char*>(::memrchr(nl, '\n', static_cast<std::size_t>(end - nl)));
            for (const ParsedLineOf& r :
                 parser_.parseMany(std::string_view(segment.data(), static_cast<std::size_t>(last_nl + 1 - segment.data())))) {
                if (countLine(r.line)) {
                    recordParsed(r.line, r.parsed);
                }
            }
            p = last_nl + 1;
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

void LogTailer::Impl::advanceCommitted(FollowedFile& f, const char* data, std::size_t n, off_t start) {
    const void* nl_ptr = ::memrchr(data, '\n', n);
    if (nl_ptr != nullptr) {
        const auto end = static_cast<std::size_t>(static_cast<const char*>(nl_ptr) - data) + 1;
        f.committed = static_cast<std::uint64_t>(start) + end;
        const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(kFingerprintBytes, f.committed));
        const std::size_t from_data = std::min(k, end);
        const std::size_t from_tail = k - from_data;
        std::uint64_t h = kFnvBasis;
        if (from_tail <= f.tail_len) {
            h = fnv1a(h, f.tail.data() + (f.tail_len - from_tail), from_tail);
            h = fnv1a(h, data + (end - from_data), from_data);
        } else {
            // The tail does not reach back far enough (should not happen: it always holds
            // min(256, offset) bytes): read the bytes again.
            std::array<char, kFingerprintBytes> tmp{};
            const ssize_t got = ::pread(f.fd, tmp.data(), k, static_cast<off_t>(f.committed - k));
            h = fnv1a(h, tmp.data(), got > 0 ? static_cast<std::size_t>(got) : 0);
        }
        f.fingerprint = k == 0 ? 0 : h;
        f.fingerprint_bytes = static_cast<std::uint32_t>(k);
    }
    if (n >= kFingerprintBytes) {
        std::memcpy(f.tail.data(), data + (n - kFingerprintBytes), kFingerprintBytes);
        f.tail_len = kFingerprintBytes;
    } else {
        const std::size_t keep = std::min(f.tail_len, kFingerprintBytes - n);
        std::memmove(f.tail.data(), f.tail.data() + (f.tail_len - keep), keep);
        std::memcpy(f.tail.data() + keep, data, n);
        f.tail_len = keep + n;
    }
}

void LogTailer::Impl::resetToStart(FollowedFile& f) {
    f.offset = 0;
    f.committed = 0;
    f.fingerprint = 0;
    f.fingerprint_bytes = 0;
    f.tail_len = 0;
    f.pending.clear();
    f.skipping = false;
}

void LogTailer::Impl::loadTail(FollowedFile& f) {
    const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(kFingerprintBytes, static_cast<std::uint64_t>(f.offset)));
    const ssize_t got = k == 0 ? 0 : ::pread(f.fd, f.tail.data(), k, f.offset - static_cast<off_t>(k));
    f.tail_len = got > 0 ? static_cast<std::size_t>(got) : 0;
}

void LogTailer::Impl::buildPositions() {
    std::size_t n = 0;
    for (const auto& f : files_) {
        if (f->fd < 0) {
            continue;
        }
        if (n == positions_.size()) {
            positions_.emplace_back();
        }
        FilePosition& p = positions_[n++];
        p.path.assign(f->path);  // reuses the string's capacity: no allocation per chunk
        p.device = static_cast<std::uint64_t>(f->dev);
        p.inode = static_cast<std::uint64_t>(f->ino);
        p.offset = f->committed;
        p.fingerprint = f->fingerprint;
        p.fingerprint_bytes = f->fingerprint_bytes;
    }
    positions_.resize(n);
}

void LogTailer::Impl::flush() {
    // Always with the positions, even without events: bad lines and skipped bytes move
    // the offsets too, and the checkpoint must see exactly what the windows saw.
    buildPositions();
    if (keyed_mode_) {
        recorder_.recordBatch(batch_, keyed_, positions_);
        keyed_.clear();
    } else {
        recorder_.recordBatch(batch_, positions_);
    }
    batch_.reset();
    counters_.lines.fetch_add(local_.lines, std::memory_order_relaxed);
    counters_.bad_invalid_json.fetch_add(local_.bad[static_cast<int>(BadLineReason::InvalidJson)],
                                         std::memory_order_relaxed);
    counters_.bad_not_object.fetch_add(local_.bad[static_cast<int>(BadLineReason::NotAnObject)],
                                       std::memory_order_relaxed);
    counters_.bad_latency.fetch_add(local_.bad[static_cast<int>(BadLineReason::BadLatency)],
                                    std::memory_order_relaxed);
    counters_.bad_too_long.fetch_add(local_.bad[static_cast<int>(BadLineReason::TooLong)],
                                     std::memory_order_relaxed);
    counters_.bad_invalid_utf8.fetch_add(local_.bad[static_cast<int>(BadLineReason::InvalidUtf8)],
                                         std::memory_order_relaxed);
    counters_.bad_timestamp.fetch_add(local_.bad[static_cast<int>(BadLineReason::BadTimestamp)],
                                      std::memory_order_relaxed);
    counters_.label_overflow.fetch_add(local_.label_overflow, std::memory_order_relaxed);
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
        const off_t start = f.offset;
        const ssize_t n = ::pread(f.fd, buffer_.data(), buffer_.size(), start);
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
                resetToStart(f);
                continue;
            }
            return false;
        }
        ++chunks;
        f.offset += n;
        if (f.draining) {
            f.quiet_since = Clock::now();
        }
        counters_.bytes.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
        process(f, buffer_.data(), static_cast<std::size_t>(n));
        advanceCommitted(f, buffer_.data(), static_cast<std::size_t>(n), start);
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
        f.committed = static_cast<std::uint64_t>(f.offset);
    }
    f.pending.clear();
    if (f.wd >= 0 && inotify_fd_ >= 0) {
        ::inotify_rm_watch(inotify_fd_, f.wd);  // may fail if the inode is gone: harmless
    }
    f.wd = -1;
    ::close(f.fd);
    f.fd = -1;
}

bool LogTailer::Impl::expireDraining(Clock::time_point now) {
    bool closed = false;
    for (auto& f : files_) {
        if (f->draining && f->fd >= 0 && now - f->quiet_since >= config_.rotate_wait) {
            readFile(*f, 0);
            spdlog::debug("source {}: closing rotated {} after rotate_wait", config_.name, f->path);
            closeFile(*f, true);
            closed = true;
        }
    }
    if (closed) {
        removeClosed();
        flush();  // the closed files leave the positions
        publishPaths();
    }
    return closed;
}

Clock::time_point LogTailer::Impl::nextExpiry() const {
    auto next = Clock::time_point::max();
    for (const auto& f : files_) {
        if (f->draining && f->fd >= 0) {
            next = std::min(next, f->quiet_since + std::chrono::duration_cast<Clock::duration>(config_.rotate_wait));
        }
    }
    return next;
}

void LogTailer::Impl::removeClosed() {
    files_.erase(std::remove_if(files_.begin(), files_.end(), [](const auto& f) { return f->fd < 0; }), files_.end());
}

bool LogTailer::Impl::addDirWatch(const std::string& dir) {
    if (inotify_fd_ < 0) {
        return false;
    }
    // Re-adding an existing watch returns the same descriptor, so this is idempotent
    // and picks up directories that appeared since the last rescan.
    const int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), kDirMask);
    if (wd >= 0 && std::find(dir_wds_.begin(), dir_wds_.end(), wd) == dir_wds_.end()) {
        dir_wds_.push_back(wd);
        return true;
    }
    return false;
}

void LogTailer::Impl::watchTargetDir(const std::string& path) {
    if (inotify_fd_ < 0) {
        return;
    }
    struct stat lst {};
    if (::lstat(path.c_str(), &lst) != 0 || !S_ISLNK(lst.st_mode)) {
        return;
    }
    // Behind a symlink (Kubernetes /var/log/containers/x.log -> /var/log/pods/.../0.log)
    // the rotation happens in the target's directory: watch it too.
    char* real = ::realpath(path.c_str(), nullptr);
    if (real == nullptr) {
        return;
    }
    addDirWatch(parentOf(real));
    std::free(real);  // NOLINT: realpath's buffer is malloc'd
}

bool LogTailer::Impl::excluded(const std::string& path) const {
    if (excludes_.empty()) {
        return false;
    }
    const auto comps = splitGlobComponents(path);
    return std::any_of(excludes_.begin(), excludes_.end(),
                       [&](const ExcludePattern& e) { return e.matches(path, comps); });
}

bool LogTailer::Impl::expand(std::vector<std::string>& out) {
    std::vector<std::string> dirs;
    for (const auto& pattern : config_.paths) {
        if (hasDoubleStar(pattern)) {
            RecursiveGlob(pattern, out, dirs).run();
            continue;
        }
        for (auto& path : expandGlob(pattern, 0)) {
            out.push_back(std::move(path));
        }
        const std::string parent = parentOf(pattern);
        if (hasGlobChars(parent)) {
            for (auto& d : expandGlob(parent, GLOB_ONLYDIR)) {
                dirs.push_back(std::move(d));
            }
        } else {
            dirs.push_back(parent);
        }
    }
    bool added = false;
    for (const auto& d : dirs) {
        added = addDirWatch(d) || added;
    }
    out.erase(std::remove_if(out.begin(), out.end(), [&](const std::string& p) { return excluded(p); }), out.end());
    return added;
}

bool LogTailer::Impl::applyRestore(FollowedFile& f, const struct stat& st) {
    std::size_t index = 0;
    while (index < restore_.size() &&
           (restore_used_[index] || restore_[index].device != static_cast<std::uint64_t>(st.st_dev) ||
            restore_[index].inode != static_cast<std::uint64_t>(st.st_ino))) {
        ++index;
    }
    if (index < restore_.size()) {
        restore_used_[index] = true;
        const FilePosition& p = restore_[index];
        bool match = p.offset <= static_cast<std::uint64_t>(st.st_size) && p.fingerprint_bytes <= p.offset &&
                     p.fingerprint_bytes <= kMaxRestoredFingerprint;
        std::vector<char> bytes;
        if (match && p.fingerprint_bytes > 0) {
            bytes.resize(p.fingerprint_bytes);
            const ssize_t got = ::pread(f.fd, bytes.data(), bytes.size(), static_cast<off_t>(p.offset - p.fingerprint_bytes));
            match = got == static_cast<ssize_t>(bytes.size()) && fnv1a(kFnvBasis, bytes.data(), bytes.size()) == p.fingerprint;
        } else if (match && p.offset > 0) {
            match = false;  // an offset without a fingerprint cannot be trusted
        }
        if (!match) {
            counters_.identity_changes.fetch_add(1, std::memory_order_relaxed);
            spdlog::info("source {}: {} is not the file checkpointed at offset {} (inode reused, replaced or "
                         "truncated): reading it from its start",
                         config_.name, f.path, p.offset);
            return true;
        }
        f.offset = static_cast<off_t>(p.offset);
        f.committed = p.offset;
        f.fingerprint = p.fingerprint;
        f.fingerprint_bytes = p.fingerprint_bytes;
        // A position taken at a read_from=end start can be mid-line: skip to its end.
        f.skipping = !bytes.empty() && bytes.back() != '\n';
        loadTail(f);
        if (p.path != f.path) {
            spdlog::info("source {}: {} was {} at the checkpoint, resuming at offset {}", config_.name, f.path,
                         p.path, p.offset);
        }
        return true;
    }
    const bool path_known =
        std::any_of(restore_.begin(), restore_.end(), [&](const FilePosition& p) { return p.path == f.path; });
    if (path_known) {
        // The path now holds another file: replaced (or rotated) while we were down.
        counters_.identity_changes.fetch_add(1, std::memory_order_relaxed);
        spdlog::info("source {}: {} was replaced since the checkpoint, reading it from its start", config_.name,
                     f.path);
        return true;
    }
    return false;
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
    // A checkpoint wins over read_from; with one, a file it does not know appeared
    // while we were down and is read from its start.
    const bool restored = restore_pending_ && applyRestore(*f, st);
    if (!restored && !(restore_pending_ && restore_had_positions_) && initial && config_.read_from == ReadFrom::End &&
        st.st_size > 0) {
        f->offset = st.st_size;
        f->committed = static_cast<std::uint64_t>(st.st_size);
        loadTail(*f);
        f->fingerprint = fnv1a(kFnvBasis, f->tail.data(), f->tail_len);
        f->fingerprint_bytes = static_cast<std::uint32_t>(f->tail_len);
        // Starting inside a line would turn its tail into a bad line: skip to its end.
        f->skipping = f->tail_len > 0 && f->tail[f->tail_len - 1] != '\n';
    }
    if (inotify_fd_ >= 0) {
        f->wd = ::inotify_add_watch(inotify_fd_, path.c_str(), kFileMask);
    }
    watchTargetDir(path);
    counters_.files_opened.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("source {}: following {} from offset {}", config_.name, path, static_cast<long long>(f->offset));
    files_.push_back(std::move(f));
}

void LogTailer::Impl::verifyIdentity(FollowedFile& f) {
    if (f.fd < 0 || f.fingerprint_bytes == 0 || f.fingerprint_bytes > kFingerprintBytes) {
        return;
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0 || st.st_size < f.offset) {
        return;  // a plain truncation: readFile sees it and counts it as one
    }
    std::array<char, kFingerprintBytes> bytes{};
    const ssize_t got = ::pread(f.fd, bytes.data(), f.fingerprint_bytes,
                                static_cast<off_t>(f.committed - f.fingerprint_bytes));
    if (got == static_cast<ssize_t>(f.fingerprint_bytes) &&
        fnv1a(kFnvBasis, bytes.data(), f.fingerprint_bytes) == f.fingerprint) {
        return;
    }
    // Rewritten in place, e.g. a copytruncate followed by more writes than we had read
    // before we looked: the size alone cannot tell, the content can.
    counters_.identity_changes.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("source {}: {} was rewritten before offset {}, reading it from its start", config_.name, f.path,
                 f.committed);
    resetToStart(f);
}

void LogTailer::Impl::rescan() {
    const bool initial = !initial_scan_done_;
    initial_scan_done_ = true;
    const auto now = Clock::now();
    bool changed = expireDraining(now);

    std::vector<std::string> paths;
    // A directory watched for the first time may have gained a file between its
    // expansion and its watch: expand once more then.
    if (expand(paths)) {
        paths.clear();
        expand(paths);
    }

    struct Match {
        std::string path;
        dev_t dev;
        ino_t ino;
        bool claimed = false;
    };
    std::vector<Match> matches;
    for (auto& path : paths) {
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

    for (auto& f : files_) {
        auto same_inode = [&](const Match& m) { return m.dev == f->dev && m.ino == f->ino; };
        auto it = std::find_if(matches.begin(), matches.end(), same_inode);
        if (f->draining) {
            if (it != matches.end()) {
                it->claimed = true;  // never reopen a file we are draining
            }
            continue;
        }
        if (it != matches.end()) {
            it->claimed = true;
            if (it->path != f->path) {
                f->path = it->path;  // renamed within the globs: same file, keep going
                changed = true;
            }
            verifyIdentity(*f);
            continue;
        }
        // The file left its path: rotated (renamed or replaced) or deleted. Take what is
        // there now, then keep reading it for late writes until rotate_wait of quiet.
        struct stat st {};
        const bool still_linked = ::fstat(f->fd, &st) == 0 && st.st_nlink > 0;
        const bool replaced = std::any_of(matches.begin(), matches.end(),
                                          [&](const Match& m) { return m.path == f->path; });
        if (still_linked || replaced) {
            counters_.rotations.fetch_add(1, std::memory_order_relaxed);
            spdlog::info("source {}: {} rotated", config_.name, f->path);
        }
        readFile(*f, 0);
        f->draining = true;
        f->quiet_since = now;
        changed = true;
    }

    for (const auto& m : matches) {
        if (!m.claimed) {
            openFile(m.path, initial);
            changed = true;
        }
    }
    if (restore_pending_) {
        restore_pending_ = false;  // positions of files that no longer exist are dropped
        restore_.clear();
        restore_used_.clear();
        changed = true;
    }
    if (changed) {
        flush();
        publishPaths();
    }
}

void LogTailer::Impl::publishPaths() {
    std::vector<std::string> live;
    std::vector<std::string> draining;
    for (const auto& f : files_) {
        if (f->fd < 0) {
            continue;
        }
        (f->draining ? draining : live).push_back(f->path);
    }
    std::lock_guard<std::mutex> lock(paths_mutex_);
    paths_ = std::move(live);
    draining_ = std::move(draining);
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
            const auto dir = std::find(dir_wds_.begin(), dir_wds_.end(), ev.wd);
            if ((ev.mask & IN_IGNORED) != 0 && dir != dir_wds_.end()) {
                dir_wds_.erase(dir);  // the directory is gone; its descriptor may be reused
                rescan_needed = true;
                continue;
            }
            if ((ev.mask & IN_Q_OVERFLOW) != 0 || dir != dir_wds_.end()) {
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
    const auto interval = std::max<std::chrono::nanoseconds>(config_.poll_interval, std::chrono::milliseconds{10});
    auto next_rescan = Clock::now() + interval;
    bool more = true;  // start() scanned; the first read happens here, not on the caller
    try {
        while (!stop_requested_.load(std::memory_order_acquire)) {
            int timeout_ms = 0;
            if (!more) {
                const auto wake_at = std::min<Clock::time_point>(next_rescan, nextExpiry());
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(wake_at - Clock::now());
                timeout_ms = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 3'600'000));
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
            const auto now = Clock::now();
            bool rescan_needed = now >= next_rescan;
            if (inotify_fd_ >= 0 && rc > 0 && (fds[1].revents & POLLIN) != 0) {
                handleInotify(rescan_needed);
            }
            if (rescan_needed) {
                rescan();
                next_rescan = Clock::now() + interval;
                more = readAll(kMaxChunksPerWake);
                continue;
            }
            // Coalesce wake-ups: a writer that flushes every line would otherwise wake us
            // (and cost a read, a batch hand-over and a positions copy) once per line.
            // Reading at most every kCoalesce turns those into one large chunk, for at
            // most kCoalesce more detection latency.
            const auto since_read = Clock::now() - last_read_;
            if (!more && since_read < kCoalesce) {
                pollfd wake{wake_fd_, POLLIN, 0};
                ::poll(&wake, 1, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(kCoalesce - since_read).count()));
                if (stop_requested_.load(std::memory_order_acquire)) {
                    break;
                }
            }
            last_read_ = Clock::now();
            expireDraining(now);
            const bool had_more = more;
            more = false;
            for (auto& f : files_) {
                // A file that hit the per-wake cap has more waiting even without an event.
                if (f->dirty || f->draining || had_more) {
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

void LogTailer::restore(const SourcePositions& positions) {
    impl_->restore_ = positions;
    impl_->restore_used_.assign(positions.size(), false);
    impl_->restore_pending_ = true;
    impl_->restore_had_positions_ = !positions.empty();
}

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
    if (im.inotify_fd_ < 0 && config_.watch != WatchMode::Poll) {
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
                    im.watchTargetDir(f->path);
                }
            }
        }
    }
    // rescan() adds the directory watches and expands again if one was new, so a file
    // created in between is seen either way.
    im.rescan();
    if (im.wake_fd_ >= 0) {
        std::uint64_t pending_wakes = 0;  // left by an earlier stop(): would spin the loop
        [[maybe_unused]] const ssize_t r = ::read(im.wake_fd_, &pending_wakes, sizeof pending_wakes);
    }
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

void LogTailer::setRouter(StreamRouter router) { impl_->router_ = std::move(router); }

void LogTailer::setBucketWidth(std::chrono::nanoseconds width) {
    impl_->bucket_ns_ = std::max<std::int64_t>(1, width.count());
}

const LabelSetTable& LogTailer::labelSets() const { return impl_->labels_; }

void LogTailer::pollOnce() {
    impl_->rescan();
    impl_->readAll(0);
}

bool LogTailer::pollSome(int max_chunks_per_file) {
    if (!impl_->scanned_once_) {
        impl_->rescan();
        impl_->scanned_once_ = true;
    }
    return impl_->readAll(std::max(1, max_chunks_per_file));
}

std::vector<std::string> LogTailer::files() const {
    std::lock_guard<std::mutex> lock(impl_->paths_mutex_);
    return impl_->paths_;
}

std::vector<std::string> LogTailer::rotatedFiles() const {
    std::lock_guard<std::mutex> lock(impl_->paths_mutex_);
    return impl_->draining_;
}

}  // namespace rollguard::agent
