#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include "rollguard/agent/config.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/sliding_window.h"
#include "process.h"
#include "temp_dir.h"

using rollguard::agent::ErrorPredicate;
using rollguard::agent::FilePosition;
using rollguard::agent::IntervalRecorder;
using rollguard::agent::IntervalStats;
using rollguard::agent::LatencyField;
using rollguard::agent::LatencyUnit;
using rollguard::agent::LogSourceConfig;
using rollguard::agent::LogTailer;
using rollguard::agent::ReadFrom;
using rollguard::agent::SourcePositions;
using rollguard::agent::WatchMode;
using rollguard::testing::appendFile;
using rollguard::testing::eventually;
using rollguard::testing::TempDir;
using rollguard::testing::writeFile;

namespace fs = std::filesystem;

namespace {

LogSourceConfig sourceConfig(std::vector<std::string> paths, ReadFrom from = ReadFrom::Beginning) {
    LogSourceConfig c;
    c.name = "app";
    c.paths = std::move(paths);
    c.read_from = from;
    LatencyField lf;
    lf.field = "duration_ms";
    lf.unit = LatencyUnit::Milliseconds;
    c.latency = lf;
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "status";
    c.error.gte = 500;
    c.poll_interval = std::chrono::milliseconds{50};
    return c;
}

std::string line(int status, int ms) {
    return R"({"method":"GET","route":"/api/items","status":)" + std::to_string(status) +
           R"(,"duration_ms":)" + std::to_string(ms) + "}\n";
}

std::string lines(int n, int status = 200, int ms = 10) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += line(status, ms);
    }
    return out;
}

}  // namespace

TEST_CASE("tailer read_from end skips existing content, beginning reads it", "[source][tailer]") {
    TempDir dir;
    writeFile(dir / "app.log", lines(3));

    IntervalRecorder from_end_rec;
    LogTailer from_end(sourceConfig({(dir / "app.log").string()}, ReadFrom::End), from_end_rec);
    IntervalRecorder from_start_rec;
    LogTailer from_start(sourceConfig({(dir / "app.log").string()}, ReadFrom::Beginning), from_start_rec);

    from_end.pollOnce();
    from_start.pollOnce();
    CHECK(from_end.counters().lines == 0);
    CHECK(from_end_rec.take().events == 0);
    CHECK(from_start.counters().lines == 3);
    CHECK(from_start_rec.take().events == 3);
    CHECK(from_end.files() == std::vector<std::string>{(dir / "app.log").string()});
    CHECK(from_end.counters().files_opened == 1);

    appendFile(dir / "app.log", lines(2, 503, 40));
    from_end.pollOnce();
    from_start.pollOnce();
    const IntervalStats s = from_end_rec.take();
    CHECK(s.events == 2);
    CHECK(s.errors == 2);
    CHECK(s.latency.totalCount() == 2);
    CHECK(s.latency.max() >= 40'000);
    CHECK(s.latency.max() <= 40'100);
    CHECK(from_start_rec.take().events == 2);
}

TEST_CASE("tailer read_from end starting mid-line skips to the next line", "[source][tailer]") {
    TempDir dir;
    writeFile(dir / "app.log", lines(2) + R"({"status":200,"dura)");
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({(dir / "app.log").string()}, ReadFrom::End), rec);
    tailer.pollOnce();
    appendFile(dir / "app.log", "tion_ms\":5}\n" + lines(1));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 1);
    CHECK(tailer.counters().badTotal() == 0);
    CHECK(rec.take().events == 1);
}

TEST_CASE("tailer counts appended lines exactly once and holds a partial line", "[source][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, "");
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({path.string()}), rec);

    for (int round = 0; round < 5; ++round) {
        appendFile(path, lines(10));
        tailer.pollOnce();
        tailer.pollOnce();  // nothing new: nothing counted twice
    }
    CHECK(tailer.counters().lines == 50);
    CHECK(rec.take().events == 50);

    const std::string full = line(500, 25);
    appendFile(path, full.substr(0, 20));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 50);
    appendFile(path, full.substr(20, 10));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 50);
    CHECK(rec.take().events == 0);
    appendFile(path, full.substr(30));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 51);
    CHECK(tailer.counters().badTotal() == 0);
    const IntervalStats s = rec.take();
    CHECK(s.events == 1);
    CHECK(s.errors == 1);
    CHECK(tailer.counters().bytes == fs::file_size(path));
}

TEST_CASE("tailer skips a too-long line with bounded memory and reads the next", "[source][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    LogSourceConfig c = sourceConfig({path.string()});
    c.max_line_bytes = 64 * 1024;
    writeFile(path, lines(1));
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.pollOnce();

    // 10 MB without a newline, written in pieces, polled in between: never buffered whole.
    const std::string piece(1024 * 1024, 'x');
    appendFile(path, R"({"status":200,"blob":")");
    for (int i = 0; i < 10; ++i) {
        appendFile(path, piece);
        tailer.pollOnce();
    }
    CHECK(tailer.counters().bad_too_long == 1);
    appendFile(path, "\"}\n" + lines(2, 500, 7));
    tailer.pollOnce();
    CHECK(tailer.counters().bad_too_long == 1);
    CHECK(tailer.counters().lines == 4);  // 1 + the long one + 2
    const IntervalStats s = rec.take();
    CHECK(s.events == 3);
    CHECK(s.errors == 2);

    // A complete too-long line inside one read is skipped too.
    appendFile(path, std::string(100 * 1024, 'y') + "\n" + lines(1));
    tailer.pollOnce();
    CHECK(tailer.counters().bad_too_long == 2);
    CHECK(tailer.counters().lines == 6);
    CHECK(rec.take().events == 1);
}

TEST_CASE("tailer follows a rename rotation without losing or repeating lines", "[source][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(5));
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({path.string()}), rec);
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 5);

    // The writer adds more to the old file, then it is rotated and a new one started.
    appendFile(path, lines(3));
    fs::rename(path, dir / "app.log.1");
    appendFile(dir / "app.log.1", lines(2));  // writer not reopened yet
    writeFile(path, lines(4, 500, 1));
    tailer.pollOnce();
    CHECK(tailer.counters().rotations == 1);
    CHECK(tailer.counters().lines == 5 + 3 + 2 + 4);

    // Late writes to the rotated file before the next rescan are still drained once.
    appendFile(dir / "app.log.1", lines(1));
    appendFile(path, lines(1));
    tailer.pollOnce();
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 5 + 3 + 2 + 4 + 1 + 1);
    CHECK(tailer.counters().badTotal() == 0);
    CHECK(tailer.counters().files_opened == 2);
    CHECK(tailer.files() == std::vector<std::string>{path.string()});
    const IntervalStats s = rec.take();
    CHECK(s.events == 16);
    CHECK(s.errors == 4);
}

TEST_CASE("tailer: a rotated file still matched by the glob is not read twice", "[source][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(5));
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({(dir / "app.log*").string()}), rec);
    tailer.pollOnce();
    fs::rename(path, dir / "app.log.1");
    writeFile(path, lines(2));
    tailer.pollOnce();
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 7);
    CHECK(rec.take().events == 7);
    CHECK(tailer.files().size() == 2);
}

TEST_CASE("tailer detects copytruncate and rereads from the start", "[source][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(10));
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({path.string()}), rec);
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 10);

    appendFile(path, R"({"status":200,)");  // a partial line the truncation throws away
    tailer.pollOnce();
    fs::resize_file(path, 0);
    appendFile(path, lines(3, 502, 3));
    tailer.pollOnce();
    CHECK(tailer.counters().truncations == 1);
    CHECK(tailer.counters().lines == 13);
    CHECK(tailer.counters().badTotal() == 0);
    const IntervalStats s = rec.take();
    CHECK(s.events == 13);
    CHECK(s.errors == 3);
}

TEST_CASE("tailer follows every file a glob matches, and files created later from 0", "[source][tailer]") {
    TempDir dir;
    writeFile(dir / "a.log", lines(2));
    writeFile(dir / "b.log", lines(3));
    writeFile(dir / "c.txt", lines(100));
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({(dir / "*.log").string()}, ReadFrom::End), rec);
    tailer.pollOnce();
    auto files = tailer.files();
    std::sort(files.begin(), files.end());
    CHECK(files == std::vector<std::string>{(dir / "a.log").string(), (dir / "b.log").string()});
    CHECK(tailer.counters().lines == 0);

    appendFile(dir / "a.log", lines(1));
    appendFile(dir / "b.log", lines(2));
    writeFile(dir / "new.log", lines(4));  // appeared after start: read from its beginning
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 7);
    CHECK(tailer.counters().files_opened == 3);
    CHECK(rec.take().events == 7);
}

TEST_CASE("tailer counts malformed lines by reason and skips them", "[source][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    std::string content = lines(2);
    content += "not json at all\n";
    content += "[1,2,3]\n";
    content += R"({"status":200,"duration_ms":-4})" "\n";
    content += R"({"status":200,"duration_ms":"soon"})" "\n";
    content += R"({"status":200,"dur)" "\n";
    content += "\n   \n";  // blank lines: seen, neither events nor bad
    content += "{\"status\":503,\"duration_ms\":9}\r\n";
    writeFile(path, content);
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({path.string()}), rec);
    tailer.pollOnce();
    const auto& c = tailer.counters();
    CHECK(c.lines == 10);
    CHECK(c.bad_invalid_json == 2);
    CHECK(c.bad_not_object == 1);
    CHECK(c.bad_latency == 2);
    CHECK(c.bad_too_long == 0);
    CHECK(c.badTotal() == 5);
    const IntervalStats s = rec.take();
    CHECK(s.events == 3);
    CHECK(s.errors == 1);
    CHECK(s.latency.totalCount() == 3);
}

TEST_CASE("tailer reads a deleted file's remaining data, then lets it go", "[source][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(2));
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({path.string()}), rec);
    tailer.pollOnce();
    appendFile(path, lines(3));
    fs::remove(path);
    tailer.pollOnce();
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 5);
    CHECK(tailer.counters().rotations == 0);
    CHECK(tailer.files().empty());
    writeFile(path, lines(1));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 6);
    CHECK(tailer.counters().files_opened == 2);
}

TEST_CASE("tailer thread picks up appends and new files via inotify and stops promptly",
          "[source][tailer][thread]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(4));
    IntervalRecorder rec;
    LogSourceConfig c = sourceConfig({(dir / "*.log").string()}, ReadFrom::End);
    // A long safety-net interval: what arrives in the test arrives through inotify.
    c.poll_interval = std::chrono::seconds{30};
    LogTailer tailer(c, rec);
    tailer.start();

    appendFile(path, lines(6, 500, 20));
    std::int64_t events = 0;
    std::int64_t errors = 0;
    auto drain = [&] {
        const IntervalStats s = rec.take();
        events += s.events;
        errors += s.errors;
    };
    CHECK(eventually([&] {
        drain();
        return events == 6;
    }));
    CHECK(errors == 6);

    writeFile(dir / "other.log", lines(3));
    CHECK(eventually([&] {
        drain();
        return events == 9;
    }));

    fs::rename(path, dir / "app.log.old");
    writeFile(path, lines(2));
    CHECK(eventually([&] {
        drain();
        return events == 11;
    }));

    const auto t0 = std::chrono::steady_clock::now();
    tailer.stop();
    // Not a timing assertion on our code's speed: only that stop() does not wait out the
    // 30 s poll interval.
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds{10});
    tailer.stop();  // idempotent
    drain();
    CHECK(events == 11);
    CHECK(tailer.counters().lines == 11);
    CHECK(tailer.counters().rotations == 1);
}

// ---------------------------------------------------------------------------------------
// Following files: `**`, exclude, symlinks, watch = poll, rotate_wait, positions, restore

namespace {

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

std::uint64_t fnv1a(const std::string& bytes) {
    if (bytes.empty()) {
        return 0;
    }
    std::uint64_t h = 14695981039346656037ULL;
    for (const char c : bytes) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ULL;
    }
    return h;
}

/// The position a tailer must report for a file whose complete lines end at `offset`.
FilePosition expectedPosition(const fs::path& path, std::uint64_t offset) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    const std::string content = rollguard::testing::readFile(path);
    REQUIRE(offset <= content.size());
    const std::uint64_t k = std::min<std::uint64_t>(256, offset);
    FilePosition p;
    p.path = path.string();
    p.device = st.st_dev;
    p.inode = st.st_ino;
    p.offset = offset;
    p.fingerprint = fnv1a(content.substr(offset - k, k));
    p.fingerprint_bytes = static_cast<std::uint32_t>(k);
    return p;
}

void checkPosition(const FilePosition& got, const FilePosition& want) {
    CHECK(got.path == want.path);
    CHECK(got.device == want.device);
    CHECK(got.inode == want.inode);
    CHECK(got.offset == want.offset);
    CHECK(got.fingerprint == want.fingerprint);
    CHECK(got.fingerprint_bytes == want.fingerprint_bytes);
}

const FilePosition* findPosition(const SourcePositions& ps, const fs::path& path) {
    for (const auto& p : ps) {
        if (p.path == path.string()) {
            return &p;
        }
    }
    return nullptr;
}

/// Descriptors of this process whose target contains `needle` (readlink of /proc/self/fd).
int openDescriptorsTo(const std::string& needle) {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = fs::read_symlink(e.path(), ec);
        if (!ec && target.string().find(needle) != std::string::npos) {
            ++n;
        }
    }
    return n;
}

/// Replaces a symlink atomically, as `ln -sfn` does.
void repoint(const fs::path& link, const fs::path& target) {
    const fs::path tmp = link.string() + ".tmp";
    fs::create_symlink(target, tmp);
    fs::rename(tmp, link);
}

std::int64_t residentBytes() {
    std::ifstream statm("/proc/self/statm");
    std::int64_t size = 0;
    std::int64_t resident = 0;
    statm >> size >> resident;
    return resident * ::sysconf(_SC_PAGESIZE);
}

}  // namespace

TEST_CASE("tailer: ** matches files at any depth, including zero directories", "[source][tailer][glob]") {
    TempDir dir;
    fs::create_directories(dir / "logs/x/y/z");
    fs::create_directories(dir / "other");
    writeFile(dir / "logs/a.log", lines(1));
    writeFile(dir / "logs/x/b.log", lines(2));
    writeFile(dir / "logs/x/y/z/c.log", lines(3));
    writeFile(dir / "logs/x/y/d.txt", lines(100));
    writeFile(dir / "logs/.hidden.log", lines(4));  // no FNM_PERIOD: a leading dot is not special
    writeFile(dir / "other/e.log", lines(100));
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({(dir / "logs/**/*.log").string()}), rec);
    tailer.pollOnce();
    CHECK(sorted(tailer.files()) == sorted({(dir / "logs/a.log").string(), (dir / "logs/x/b.log").string(),
                                            (dir / "logs/x/y/z/c.log").string(),
                                            (dir / "logs/.hidden.log").string()}));
    CHECK(tailer.counters().lines == 1 + 2 + 3 + 4);

    // A directory created later, deeper than any before: its files are read from 0.
    fs::create_directories(dir / "logs/x/y/z/w/v");
    writeFile(dir / "logs/x/y/z/w/v/f.log", lines(5));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 1 + 2 + 3 + 4 + 5);
    CHECK(tailer.files().size() == 5);
    CHECK(rec.take().events == 15);

    // `**` in the middle, and a trailing `**` matching every file below.
    IntervalRecorder rec2;
    LogTailer mid(sourceConfig({(dir / "**/z/*.log").string(), (dir / "other/**").string()}), rec2);
    mid.pollOnce();
    CHECK(sorted(mid.files()) == sorted({(dir / "logs/x/y/z/c.log").string(), (dir / "other/e.log").string()}));
    CHECK(mid.counters().lines == 103);
}

TEST_CASE("tailer: exclude patterns are never followed", "[source][tailer][glob]") {
    TempDir dir;
    fs::create_directories(dir / "a/secret/deep");
    writeFile(dir / "app.log", lines(1));
    writeFile(dir / "skip-me.log", lines(10));
    writeFile(dir / "app.old.log", lines(20));
    writeFile(dir / "a/b.log", lines(2));
    writeFile(dir / "a/secret/c.log", lines(40));
    writeFile(dir / "a/secret/deep/d.log", lines(80));
    LogSourceConfig c = sourceConfig({(dir / "*.log").string(), (dir / "a/**/*.log").string()});
    c.exclude = {(dir / "skip-*.log").string(), "*.old.log", (dir / "**/secret/**").string()};
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.pollOnce();
    CHECK(sorted(tailer.files()) == sorted({(dir / "app.log").string(), (dir / "a/b.log").string()}));
    CHECK(tailer.counters().lines == 3);

    // Excluded files that appear later are not picked up either.
    writeFile(dir / "skip-too.log", lines(7));
    writeFile(dir / "a/secret/new.log", lines(7));
    writeFile(dir / "a/new.log", lines(5));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 8);
    CHECK(tailer.counters().files_opened == 3);
}

TEST_CASE("tailer follows a symlink through rotation: target recreated and link re-pointed",
          "[source][tailer][symlink]") {
    TempDir dir;
    fs::create_directories(dir / "containers");
    fs::create_directories(dir / "pods/a");
    fs::create_directories(dir / "pods/b");
    const auto link = dir / "containers/app.log";
    writeFile(dir / "pods/a/0.log", lines(3));
    fs::create_symlink(dir / "pods/a/0.log", link);
    LogSourceConfig c = sourceConfig({(dir / "containers/*.log").string()});
    c.rotate_wait = std::chrono::hours{1};  // nothing closes during the test
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 3);
    SourcePositions ps;
    rec.take(&ps);
    REQUIRE(ps.size() == 1);
    checkPosition(ps[0], expectedPosition(link, fs::file_size(dir / "pods/a/0.log")));  // identity of the target

    // The kubelet renames the target and starts a new one; the writer was late.
    appendFile(dir / "pods/a/0.log", lines(2));
    fs::rename(dir / "pods/a/0.log", dir / "pods/a/0.log.1");
    appendFile(dir / "pods/a/0.log.1", lines(1));
    writeFile(dir / "pods/a/0.log", lines(4, 500));
    tailer.pollOnce();
    CHECK(tailer.counters().rotations == 1);
    CHECK(tailer.counters().lines == 3 + 2 + 1 + 4);
    CHECK(tailer.files() == std::vector<std::string>{link.string()});
    CHECK(tailer.rotatedFiles() == std::vector<std::string>{link.string()});

    // The link is re-pointed to another container's file.
    appendFile(dir / "pods/a/0.log", lines(1));
    writeFile(dir / "pods/b/0.log", lines(6));
    repoint(link, dir / "pods/b/0.log");
    tailer.pollOnce();
    CHECK(tailer.counters().rotations == 2);
    CHECK(tailer.counters().lines == 3 + 2 + 1 + 4 + 1 + 6);
    appendFile(dir / "pods/b/0.log", lines(2));
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 19);
    CHECK(tailer.counters().badTotal() == 0);
    CHECK(tailer.counters().files_opened == 3);
    const IntervalStats s = rec.take(&ps);
    CHECK(s.events == 16);
    CHECK(s.errors == 4);
    const FilePosition want = expectedPosition(dir / "pods/b/0.log", fs::file_size(dir / "pods/b/0.log"));
    const auto live = std::find_if(ps.begin(), ps.end(), [&](const FilePosition& p) { return p.inode == want.inode; });
    REQUIRE(live != ps.end());
    CHECK(live->path == link.string());
    CHECK(live->offset == want.offset);
    CHECK(live->fingerprint == want.fingerprint);
}

TEST_CASE("tailer thread sees a symlink's target recreated without waiting for the poll",
          "[source][tailer][symlink][thread]") {
    TempDir dir;
    fs::create_directories(dir / "containers");
    fs::create_directories(dir / "pods");
    const auto link = dir / "containers/app.log";
    writeFile(dir / "pods/0.log", lines(2));
    fs::create_symlink(dir / "pods/0.log", link);
    LogSourceConfig c = sourceConfig({(dir / "containers/*.log").string()});
    c.poll_interval = std::chrono::seconds{30};
    c.rotate_wait = std::chrono::milliseconds{100};
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.start();
    CHECK(eventually([&] { return tailer.counters().lines == 2; }));
    fs::rename(dir / "pods/0.log", dir / "pods/0.log.1");
    // The rotation is seen while the link dangles; the new target then appears in the
    // pods directory, where only the watch on the target's directory sees it.
    REQUIRE(eventually([&] { return tailer.counters().rotations == 1; }));
    writeFile(dir / "pods/0.log", lines(3));
    CHECK(eventually([&] { return tailer.counters().lines == 5; }));
    CHECK(eventually([&] { return tailer.rotatedFiles().empty(); }));
    tailer.stop();
    CHECK(tailer.counters().rotations == 1);
    CHECK(tailer.files() == std::vector<std::string>{link.string()});
}

TEST_CASE("tailer watch = poll uses no inotify and still picks up appends and new files",
          "[source][tailer][thread]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(1));
    const int inotify_before = openDescriptorsTo("inotify");

    LogSourceConfig c = sourceConfig({(dir / "*.log").string()});
    c.watch = WatchMode::Poll;
    c.poll_interval = std::chrono::milliseconds{20};
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.start();
    CHECK(openDescriptorsTo("inotify") == inotify_before);
    CHECK(eventually([&] { return tailer.counters().lines == 1; }));
    appendFile(path, lines(4));
    CHECK(eventually([&] { return tailer.counters().lines == 5; }));
    writeFile(dir / "new.log", lines(2));
    CHECK(eventually([&] { return tailer.counters().lines == 7; }));
    tailer.stop();

    // The same with watch = auto does open an inotify descriptor (the check above can fail).
    LogSourceConfig a = sourceConfig({(dir / "*.log").string()});
    IntervalRecorder rec2;
    LogTailer with_inotify(a, rec2);
    with_inotify.start();
    CHECK(openDescriptorsTo("inotify") == inotify_before + 1);
    with_inotify.stop();
}

TEST_CASE("tailer keeps reading a rotated file until rotate_wait, then closes it", "[source][tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const auto old = dir / "app.log.1";

    SECTION("late lines within rotate_wait are read; after it the descriptor is closed") {
        writeFile(path, lines(2));
        LogSourceConfig c = sourceConfig({path.string()});
        c.rotate_wait = std::chrono::milliseconds{200};
        IntervalRecorder rec;
        LogTailer tailer(c, rec);
        tailer.pollOnce();
        fs::rename(path, old);
        writeFile(path, lines(1));
        tailer.pollOnce();
        CHECK(tailer.counters().lines == 3);
        appendFile(old, lines(3, 500));  // a writer that has not reopened yet
        tailer.pollOnce();
        CHECK(tailer.counters().lines == 6);
        REQUIRE(eventually([&] {
            tailer.pollOnce();
            return tailer.rotatedFiles().empty();
        }));
        CHECK(openDescriptorsTo(old.string()) == 0);
        CHECK(openDescriptorsTo(path.string()) == 1);
        appendFile(old, lines(5));  // after rotate_wait: no longer read
        tailer.pollOnce();
        CHECK(tailer.counters().lines == 6);
        CHECK(rec.take().errors == 3);
    }
    SECTION("within a long rotate_wait the rotated file stays open and is read on every poll") {
        writeFile(path, lines(2));
        LogSourceConfig c = sourceConfig({path.string()});
        c.rotate_wait = std::chrono::hours{1};
        IntervalRecorder rec;
        LogTailer tailer(c, rec);
        tailer.pollOnce();
        fs::rename(path, old);
        writeFile(path, "");
        for (int i = 1; i <= 5; ++i) {
            appendFile(old, lines(1));
            tailer.pollOnce();
            CHECK(tailer.counters().lines == static_cast<std::uint64_t>(2 + i));
        }
        CHECK(tailer.rotatedFiles() == std::vector<std::string>{path.string()});
        CHECK(openDescriptorsTo(old.string()) == 1);
        // A last line without a newline waits while the file is still open.
        appendFile(old, R"({"status":200,"duration_ms":1})");
        tailer.pollOnce();
        CHECK(tailer.counters().lines == 7);
    }
    SECTION("rotate_wait 0: the rotated file's partial last line counts when it is closed") {
        writeFile(path, lines(2) + R"({"status":503,"duration_ms":1})");
        LogSourceConfig c = sourceConfig({path.string()});
        c.rotate_wait = std::chrono::nanoseconds{0};
        IntervalRecorder rec;
        LogTailer tailer(c, rec);
        tailer.pollOnce();
        CHECK(tailer.counters().lines == 2);
        fs::rename(path, old);
        tailer.pollOnce();  // rotation seen: draining
        tailer.pollOnce();  // quiet for >= 0: drained and closed
        CHECK(tailer.rotatedFiles().empty());
        CHECK(openDescriptorsTo(old.string()) == 0);
        CHECK(tailer.counters().lines == 3);
        CHECK(rec.take().errors == 1);
    }
}

TEST_CASE("tailer thread closes a rotated file after rotate_wait", "[source][tailer][rotation][thread]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(1));
    LogSourceConfig c = sourceConfig({path.string()});
    // The late lines below must come while the rotated file is still open, i.e. within
    // rotate_wait of the rotation being seen, however slowly this thread runs: 5 s (the
    // default). Still far from the 30 s poll that the close must not wait for.
    c.rotate_wait = std::chrono::seconds{5};
    c.poll_interval = std::chrono::seconds{30};
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.start();
    REQUIRE(eventually([&] { return tailer.counters().lines == 1; }));
    fs::rename(path, dir / "app.log.1");
    writeFile(path, lines(2));
    REQUIRE(eventually([&] { return tailer.counters().lines == 3; }));
    appendFile(dir / "app.log.1", lines(4));
    CHECK(eventually([&] { return tailer.counters().lines == 7; }));
    // Closed by the thread's own timer: the 30 s poll never comes.
    CHECK(eventually([&] { return tailer.rotatedFiles().empty(); }));
    CHECK(eventually([&] { return openDescriptorsTo((dir / "app.log.1").string()) == 0; }));
    tailer.stop();
    CHECK(tailer.counters().lines == 7);
}

TEST_CASE("tailer records exact positions: offset after the last complete line, fingerprint of the bytes before it",
          "[source][tailer][positions]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, "");
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({path.string()}), rec);
    tailer.pollOnce();
    SourcePositions ps;
    rec.take(&ps);
    REQUIRE(ps.size() == 1);
    checkPosition(ps[0], expectedPosition(path, 0));
    CHECK(ps[0].fingerprint == 0);

    // Shorter than 256 bytes: all of it is hashed; a partial line is not part of the offset.
    const std::string one = line(200, 5);
    appendFile(path, one + R"({"status":2)");
    tailer.pollOnce();
    rec.take(&ps);
    REQUIRE(ps.size() == 1);
    checkPosition(ps[0], expectedPosition(path, one.size()));
    CHECK(ps[0].fingerprint_bytes == one.size());

    // Lines appended one by one: each position exact, the hash spans earlier reads.
    appendFile(path, "00,\"duration_ms\":3}\n");
    std::uint64_t end = fs::file_size(path);
    for (int i = 0; i < 6; ++i) {
        tailer.pollOnce();
        rec.take(&ps);
        REQUIRE(ps.size() == 1);
        checkPosition(ps[0], expectedPosition(path, end));
        appendFile(path, line(200, i));
        end = fs::file_size(path);
    }
    CHECK(tailer.counters().lines == 7);

    // A read larger than one chunk, whose last newline sits just past the chunk boundary:
    // the hashed bytes straddle two reads.
    TempDir big_dir;
    const auto big = big_dir / "big.log";
    std::string content;
    const std::string filler = R"({"status":200,"pad":")" + std::string(200, 'p') + "\"}\n";
    while (content.size() + filler.size() < 256 * 1024 - 40) {
        content += filler;
    }
    const std::string straddle = R"({"status":200,"pad":")" + std::string(256 * 1024 - content.size() + 20, 'q') + "\"}\n";
    content += straddle;
    content += R"({"status":200,"partial":)";
    writeFile(big, content);
    IntervalRecorder big_rec;
    LogTailer big_tailer(sourceConfig({big.string()}), big_rec);
    big_tailer.pollOnce();
    big_rec.take(&ps);
    REQUIRE(ps.size() == 1);
    const std::uint64_t big_end = content.rfind('\n') + 1;
    CHECK(big_end > 256 * 1024);
    CHECK(big_end < 256 * 1024 + 256);
    checkPosition(ps[0], expectedPosition(big, big_end));
}

TEST_CASE("tailer positions cover every followed file and every chunk's data", "[source][tailer][positions]") {
    TempDir dir;
    for (int i = 1; i <= 50; ++i) {
        writeFile(dir / ("f" + std::to_string(i) + ".log"), lines(i, i % 5 == 0 ? 500 : 200));
    }
    writeFile(dir / "f1.log.gz", "binary");
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({(dir / "f*.log").string()}), rec);
    tailer.pollOnce();
    CHECK(tailer.files().size() == 50);
    CHECK(tailer.counters().lines == 50 * 51 / 2);
    CHECK(tailer.counters().files_opened == 50);
    SourcePositions ps;
    const IntervalStats s = rec.take(&ps);
    CHECK(s.events == 50 * 51 / 2);
    CHECK(s.errors == (5 + 10 + 15 + 20 + 25 + 30 + 35 + 40 + 45 + 50));
    REQUIRE(ps.size() == 50);
    for (int i = 1; i <= 50; ++i) {
        const auto p = dir / ("f" + std::to_string(i) + ".log");
        const FilePosition* got = findPosition(ps, p);
        REQUIRE(got != nullptr);
        checkPosition(*got, expectedPosition(p, fs::file_size(p)));
    }
}

TEST_CASE("tailer restore resumes exactly where the checkpoint was", "[source][tailer][restore]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(10));
    SourcePositions checkpoint;
    {
        IntervalRecorder rec;
        LogTailer first(sourceConfig({path.string()}), rec);
        first.pollOnce();
        CHECK(rec.take(&checkpoint).events == 10);
    }
    appendFile(path, lines(5, 500) + R"({"status":200,)");

    SECTION("a checkpoint wins over read_from = beginning") {
        IntervalRecorder rec;
        LogTailer second(sourceConfig({path.string()}, ReadFrom::Beginning), rec);
        second.restore(checkpoint);
        second.pollOnce();
        CHECK(second.counters().lines == 5);
        CHECK(second.counters().identity_changes == 0);
        SourcePositions now;
        const IntervalStats s = rec.take(&now);
        CHECK(s.events == 5);
        CHECK(s.errors == 5);
        REQUIRE(now.size() == 1);
        checkPosition(now[0], expectedPosition(path, fs::file_size(path) - std::string(R"({"status":200,)").size()));
    }
    SECTION("a checkpoint wins over read_from = end") {
        IntervalRecorder rec;
        LogTailer second(sourceConfig({path.string()}, ReadFrom::End), rec);
        second.restore(checkpoint);
        second.pollOnce();
        CHECK(second.counters().lines == 5);
        CHECK(rec.take().errors == 5);
    }
    SECTION("a checkpoint taken mid-line (a read_from = end start) resumes at the next line") {
        appendFile(path, "\"duration_ms\":4}\n");
        appendFile(path, R"({"status":200,)");
        SourcePositions mid;
        {
            IntervalRecorder rec;
            LogTailer first(sourceConfig({path.string()}, ReadFrom::End), rec);
            first.pollOnce();
            rec.take(&mid);
        }
        REQUIRE(mid.size() == 1);
        checkPosition(mid[0], expectedPosition(path, fs::file_size(path)));
        appendFile(path, "\"duration_ms\":4}\n" + lines(1, 500));
        IntervalRecorder rec;
        LogTailer second(sourceConfig({path.string()}), rec);
        second.restore(mid);
        second.pollOnce();
        CHECK(second.counters().lines == 1);
        CHECK(second.counters().badTotal() == 0);
        CHECK(rec.take().errors == 1);
    }
    SECTION("a partial line at the checkpoint is read again whole") {
        SourcePositions mid;
        {
            IntervalRecorder rec;
            LogTailer first(sourceConfig({path.string()}), rec);
            first.pollOnce();
            rec.take(&mid);
        }
        appendFile(path, "\"duration_ms\":4}\n");
        IntervalRecorder rec;
        LogTailer second(sourceConfig({path.string()}), rec);
        second.restore(mid);
        second.pollOnce();
        CHECK(second.counters().lines == 1);
        CHECK(second.counters().badTotal() == 0);
        CHECK(rec.take().events == 1);
    }
}

TEST_CASE("tailer restore reads a file from its start when its identity changed", "[source][tailer][restore]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(10));
    SourcePositions checkpoint;
    IntervalRecorder first_rec;
    // Kept alive (and its descriptor open) so a new file cannot get the old inode number.
    LogTailer first(sourceConfig({path.string()}), first_rec);
    first.pollOnce();
    first_rec.take(&checkpoint);
    REQUIRE(checkpoint.size() == 1);

    IntervalRecorder rec;
    LogTailer second(sourceConfig({path.string()}, ReadFrom::End), rec);

    SECTION("same inode, other bytes before the offset (inode reuse or rewritten in place)") {
        std::string other;
        for (int i = 0; i < 12; ++i) {
            other += line(404, 100 + i);  // longer lines, same inode, size >= offset
        }
        writeFile(path, other);
        REQUIRE(fs::file_size(path) >= checkpoint[0].offset);
        second.restore(checkpoint);
        second.pollOnce();
        CHECK(second.counters().identity_changes == 1);
        CHECK(second.counters().lines == 12);
    }
    SECTION("same inode, truncated below the offset while we were down") {
        writeFile(path, lines(2, 500));
        second.restore(checkpoint);
        second.pollOnce();
        CHECK(second.counters().identity_changes == 1);
        CHECK(second.counters().lines == 2);
        CHECK(rec.take().errors == 2);
    }
    SECTION("the path holds another inode: replaced while we were down") {
        fs::remove(path);
        writeFile(path, lines(3));
        second.restore(checkpoint);
        second.pollOnce();
        CHECK(second.counters().identity_changes == 1);
        CHECK(second.counters().lines == 3);
    }
    SECTION("unchanged: resumed, nothing counted again (the sections above can fail)") {
        appendFile(path, lines(1));
        second.restore(checkpoint);
        second.pollOnce();
        CHECK(second.counters().identity_changes == 0);
        CHECK(second.counters().lines == 1);
    }
}

TEST_CASE("tailer restore resumes a file renamed while we were down, by its inode", "[source][tailer][restore]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(10));
    writeFile(dir / "gone.log", lines(1));
    SourcePositions checkpoint;
    {
        IntervalRecorder rec;
        LogTailer first(sourceConfig({(dir / "*.log*").string()}), rec);
        first.pollOnce();
        rec.take(&checkpoint);
    }
    REQUIRE(checkpoint.size() == 2);
    // While down: the writer adds 3 lines, the file is rotated, a new one gets 4 lines,
    // and a file in the checkpoint disappears.
    appendFile(path, lines(3, 500));
    fs::rename(path, dir / "app.log.1");
    writeFile(path, lines(4));
    fs::remove(dir / "gone.log");

    IntervalRecorder rec;
    LogTailer second(sourceConfig({(dir / "*.log*").string()}, ReadFrom::End), rec);
    second.restore(checkpoint);
    second.pollOnce();
    CHECK(second.counters().lines == 3 + 4);  // nothing lost, nothing counted twice
    CHECK(second.counters().identity_changes == 1);  // app.log names another file now
    const IntervalStats s = rec.take();
    CHECK(s.events == 7);
    CHECK(s.errors == 3);
    CHECK(sorted(second.files()) == sorted({path.string(), (dir / "app.log.1").string()}));

    // A file not in the checkpoint appeared while down: from its start, not per read_from.
    TempDir dir2;
    writeFile(dir2 / "a.log", lines(2));
    SourcePositions cp2;
    {
        IntervalRecorder r;
        LogTailer t(sourceConfig({(dir2 / "*.log").string()}), r);
        t.pollOnce();
        r.take(&cp2);
    }
    writeFile(dir2 / "b.log", lines(6));
    IntervalRecorder r2;
    LogTailer t2(sourceConfig({(dir2 / "*.log").string()}, ReadFrom::End), r2);
    t2.restore(cp2);
    t2.pollOnce();
    CHECK(t2.counters().lines == 6);
}

TEST_CASE("tailer: delete and recreate the same path drains the old file and reads the new one from its start",
          "[source][tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(3));
    LogSourceConfig c = sourceConfig({path.string()});
    c.rotate_wait = std::chrono::milliseconds{200};
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.pollOnce();
    struct stat before {};
    REQUIRE(::stat(path.c_str(), &before) == 0);
    appendFile(path, lines(2));
    {
        // Keep a writer's descriptor on the deleted file, as a logger that has not reopened.
        std::ofstream writer(path, std::ios::app);
        fs::remove(path);
        writeFile(path, lines(4, 500));
        tailer.pollOnce();
        CHECK(tailer.counters().lines == 3 + 2 + 4);
        CHECK(tailer.rotatedFiles() == std::vector<std::string>{path.string()});
        CHECK(openDescriptorsTo(path.string() + " (deleted)") == 2);  // the writer's and ours
        writer << lines(1);
        writer.flush();
        tailer.pollOnce();
        CHECK(tailer.counters().lines == 10);
    }
    REQUIRE(eventually([&] {
        tailer.pollOnce();
        return tailer.rotatedFiles().empty();
    }));
    CHECK(openDescriptorsTo(path.string() + " (deleted)") == 0);
    CHECK(tailer.files() == std::vector<std::string>{path.string()});
    CHECK(tailer.counters().files_opened == 2);
    CHECK(tailer.counters().identity_changes == 0);
    SourcePositions ps;
    const IntervalStats s = rec.take(&ps);
    CHECK(s.events == 10);
    CHECK(s.errors == 4);
    REQUIRE(ps.size() == 1);
    checkPosition(ps[0], expectedPosition(path, fs::file_size(path)));
}

TEST_CASE("tailer: a file rewritten in place beyond our offset is detected by its fingerprint",
          "[source][tailer][identity]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(5));
    IntervalRecorder rec;
    LogTailer tailer(sourceConfig({path.string()}), rec);
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 5);
    // copytruncate, then more written than we had read, before we look: the size alone
    // looks like an append.
    std::string other;
    for (int i = 0; i < 8; ++i) {
        other += line(503, 1000 + i);
    }
    REQUIRE(other.size() > fs::file_size(path));
    writeFile(path, other);
    tailer.pollOnce();
    CHECK(tailer.counters().identity_changes == 1);
    CHECK(tailer.counters().lines == 5 + 8);
    CHECK(tailer.counters().badTotal() == 0);
    CHECK(rec.take().errors == 8);
}

TEST_CASE("tailer: an inode coming back after its file was closed is a new file", "[source][tailer][identity]") {
    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(6));
    LogSourceConfig c = sourceConfig({path.string()});
    c.rotate_wait = std::chrono::nanoseconds{0};
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    tailer.pollOnce();
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    const auto old_inode = st.st_ino;
    fs::remove(path);
    tailer.pollOnce();
    tailer.pollOnce();
    REQUIRE(tailer.files().empty());
    REQUIRE(tailer.rotatedFiles().empty());
    // Try to get the same inode number back (ext4/tmpfs usually hand it out again).
    bool reused = false;
    for (int i = 0; i < 50 && !reused; ++i) {
        writeFile(path, lines(7, 500));
        REQUIRE(::stat(path.c_str(), &st) == 0);
        reused = st.st_ino == old_inode;
        if (!reused) {
            fs::remove(path);
        }
    }
    if (!reused) {
        WARN("the filesystem did not reuse the inode; checking a plain new file instead");
        writeFile(path, lines(7, 500));
    }
    tailer.pollOnce();
    CHECK(tailer.counters().lines == 6 + 7);
    CHECK(rec.take().errors == 7);
}

TEST_CASE("tailer skips a 100 MB line with 64 KiB max_line_bytes in bounded memory", "[source][tailer][long]") {
    TempDir dir;
    const auto path = dir / "app.log";
    {
        std::ofstream out(path, std::ios::binary);
        out << lines(1) << R"({"status":200,"blob":")";
        const std::string piece(1024 * 1024, 'x');
        for (int i = 0; i < 100; ++i) {
            out << piece;
        }
        out << "\"}\n" << lines(2, 500);
    }
    LogSourceConfig c = sourceConfig({path.string()});
    c.max_line_bytes = 64 * 1024;
    IntervalRecorder rec;
    LogTailer tailer(c, rec);
    const std::int64_t before = residentBytes();
    tailer.pollOnce();
    const std::int64_t grown = residentBytes() - before;
    CHECK(grown < 20 * 1024 * 1024);
    CHECK(tailer.counters().bad_too_long == 1);
    CHECK(tailer.counters().lines == 4);
    const IntervalStats s = rec.take();
    CHECK(s.events == 3);
    CHECK(s.errors == 2);
    CHECK(tailer.counters().bytes == fs::file_size(path));
}

TEST_CASE("tailer logs bad lines as rate-limited samples", "[source][tailer]") {
    std::ostringstream captured;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));

    TempDir dir;
    const auto path = dir / "app.log";
    writeFile(path, lines(2) + "not json \x01 at all\n" + lines(1) + "[1]\n{\"status\":200,\"duration_ms\":-5}\n");
    IntervalRecorder recorder;
    LogTailer tailer(sourceConfig({path.string()}), recorder);
    tailer.pollOnce();
    spdlog::set_default_logger(previous);

    CHECK(tailer.counters().badTotal() == 3);
    const std::string text = captured.str();
    // One sample (the first bad line, control byte escaped); the other two wait for the
    // next sample, ten seconds later.
    CHECK(text.find("source app: skipped a bad line (invalid_json): not json \\x01 at all") != std::string::npos);
    std::size_t samples = 0;
    for (auto pos = text.find("skipped a bad line"); pos != std::string::npos; pos = text.find("skipped a bad line", pos + 1)) {
        ++samples;
    }
    CHECK(samples == 1);
}
