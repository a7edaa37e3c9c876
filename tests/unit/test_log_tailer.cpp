#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "rollguard/agent/config.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/sliding_window.h"
#include "temp_dir.h"

using rollguard::agent::ErrorPredicate;
using rollguard::agent::IntervalRecorder;
using rollguard::agent::IntervalStats;
using rollguard::agent::LatencyField;
using rollguard::agent::LatencyUnit;
using rollguard::agent::LogSourceConfig;
using rollguard::agent::LogTailer;
using rollguard::agent::ReadFrom;
using rollguard::testing::appendFile;
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

/// Waits up to ~5 s for a condition the tailer thread will make true.
bool eventually(const std::function<bool()>& cond) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
    return cond();
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
