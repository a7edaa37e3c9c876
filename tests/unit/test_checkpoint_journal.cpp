// The checkpoint's base and journal (CheckpointStore): what is read back is always one
// complete checkpoint instant, whatever the journal's state (torn, damaged, left by an
// interrupted compaction), and it equals what the series held at that instant.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "rollguard/agent/checkpoint.h"
#include "rollguard/agent/sliding_window.h"
#include "temp_dir.h"

using namespace std::chrono_literals;
using rollguard::agent::Checkpoint;
using rollguard::agent::CheckpointEncoder;
using rollguard::agent::CheckpointLoad;
using rollguard::agent::CheckpointStore;
using rollguard::agent::FilePosition;
using rollguard::agent::IntervalStats;
using rollguard::agent::Series;
using rollguard::agent::SourceCheckpoint;
using rollguard::agent::StreamCheckpoint;
using rollguard::rules::TimePoint;
using rollguard::testing::TempDir;
using rollguard::testing::readFile;
using rollguard::testing::writeFile;

namespace {

const TimePoint t0{std::chrono::seconds{1'700'000'000}};
const std::vector<std::chrono::nanoseconds> kWindows{10s, 1min};  // 100 ms and 200 ms slots

std::unique_ptr<Series> makeSeries() {
    auto s = std::make_unique<Series>();
    for (auto w : kWindows) {
        s->addWindow(w);
    }
    return s;
}

// Two sources as the daemon saves them: "app" (a log source: positions, stream 0 and
// selection streams, one of which appears later and one of which goes quiet) and
// "scrape.up" (no positions, value points). Time moves 250 ms a step; some steps bring
// late event-time data that re-encodes a sealed slot.
struct World {
    std::mt19937_64 rng{42};
    TimePoint now = t0;
    int step_no = 0;
    std::int64_t offset = 0;
    std::unique_ptr<Series> app = makeSeries();
    std::map<std::string, std::unique_ptr<Series>> groups;  // selection "route" streams
    std::unique_ptr<Series> scrape = makeSeries();
    int events_per_step = 3;

    World() { groups["/a"] = makeSeries(); }

    IntervalStats interval(int events) {
        std::lognormal_distribution<double> latency(std::log(20'000.0), 0.8);
        IntervalStats i;
        i.events = events;
        i.errors = events / 3;
        for (int e = 0; e < events; ++e) {
            i.latency.record(std::llround(latency(rng)));
        }
        return i;
    }

    void step() {
        ++step_no;
        now += 250ms;
        offset += 100 * events_per_step;
        app->add(now, interval(events_per_step));
        if (step_no == 5) {
            groups["/b"] = makeSeries();  // a new label set: a stream the base does not hold
        }
        for (auto& [group, series] : groups) {
            if (group == "/a" && step_no > 12 && step_no < 30) {
                series->advance(now);  // quiet: only time moves
                continue;
            }
            series->add(now, interval(1));
        }
        if (step_no % 4 == 0) {
            // Late event-time data: re-encodes sealed slots a record already holds (in
            // both rings, then only in the longer one, which still holds the slot).
            app->addAt(now - 1000ms, interval(2));
            app->addAt(now - 10s + 250ms, interval(1));
        }
        IntervalStats value;
        value.value_sum = static_cast<double>(step_no);
        value.value_count = 1;
        value.last_value = static_cast<double>(step_no);
        scrape->add(now, value);
        if (step_no % 5 == 0) {
            IntervalStats late;
            late.last_value = -1.0 * step_no;
            scrape->addAt(now - 375ms, late);  // a point inserted before the newest
        }
    }

    rollguard::agent::SourcePositions positions() const {
        return {FilePosition{"/var/log/app.log", 1, 77, static_cast<std::uint64_t>(offset), 0xABCDEFULL + offset, 256}};
    }

    // The whole checkpoint, as the single-file writer saved it.
    Checkpoint full() const {
        Checkpoint cp;
        SourceCheckpoint app_cp{"app", positions(), app->serialize(), {}};
        for (const auto& [group, series] : groups) {
            app_cp.streams.push_back(StreamCheckpoint{"route|", group, series->serialize()});
        }
        cp.sources.push_back(std::move(app_cp));
        cp.sources.push_back(SourceCheckpoint{"scrape.up", {}, scrape->serialize(), {}});
        return cp;
    }

    void forEach(const std::function<void(Series&)>& fn) {
        fn(*app);
        for (auto& [group, series] : groups) {
            fn(*series);
        }
        fn(*scrape);
    }

    std::optional<std::string> writeBase(CheckpointStore& store) {
        auto err = store.writeBase([&](CheckpointEncoder& e) {
            e.begin(2);
            e.source("app", positions(), app->serialize(), groups.size());
            for (const auto& [group, series] : groups) {
                e.stream("route|", group, series->serialize());
            }
            e.source("scrape.up", {}, scrape->serialize(), 0);
        });
        if (!err) {
            forEach([](Series& s) { s.markSaved(); });
        }
        return err;
    }

    std::optional<std::string> append(CheckpointStore& store) {
        Checkpoint changes;
        SourceCheckpoint app_cp{"app", positions(), app->serializeChanges(), {}};
        for (const auto& [group, series] : groups) {
            if (series->hasUnsavedChanges()) {
                app_cp.streams.push_back(StreamCheckpoint{"route|", group, series->serializeChanges()});
            }
        }
        changes.sources.push_back(std::move(app_cp));
        changes.sources.push_back(SourceCheckpoint{"scrape.up", {}, scrape->serializeChanges(), {}});
        auto err = store.append(changes);
        if (!err) {
            forEach([](Series& s) { s.markSaved(); });
        }
        return err;
    }

    // One checkpoint as the daemon writes it: a base when the store wants one.
    void checkpoint(CheckpointStore& store) {
        const auto err = store.wantsBase() ? writeBase(store) : append(store);
        REQUIRE_FALSE(err.has_value());
    }
};

// A series' bytes restored into fresh windows and moved to `at`: a series that was left
// out of journal records because only time moved for it is then the same as the original.
std::string settled(const std::string& bytes, TimePoint at) {
    auto s = makeSeries();
    REQUIRE(s->restore(bytes));
    s->advance(at);
    return s->serialize();
}

void requireSameState(const Checkpoint& got, const Checkpoint& want, TimePoint at) {
    REQUIRE(got.sources.size() == want.sources.size());
    for (const auto& w : want.sources) {
        const SourceCheckpoint* g = got.find(w.name);
        REQUIRE(g != nullptr);
        INFO("source " << w.name);
        REQUIRE(g->positions == w.positions);
        REQUIRE(settled(g->series, at) == settled(w.series, at));
        REQUIRE(g->streams.size() == w.streams.size());
        for (const auto& ws : w.streams) {
            INFO("stream " << ws.group);
            auto gs = std::find_if(g->streams.begin(), g->streams.end(), [&](const StreamCheckpoint& s) {
                return s.selection == ws.selection && s.group == ws.group;
            });
            REQUIRE(gs != g->streams.end());
            REQUIRE(settled(gs->series, at) == settled(ws.series, at));
        }
    }
}

Checkpoint readOk(const CheckpointStore& store, CheckpointLoad* load = nullptr) {
    std::string why;
    auto cp = store.read(why, load);
    INFO(why);
    REQUIRE(cp.has_value());
    return std::move(*cp);
}

// Replaces a file by a new one: truncating a file in place makes ext4 flush it at close
// (auto_da_alloc), which made the every-byte loops take seconds.
void replaceWith(const std::string& path, const std::string& bytes) {
    std::filesystem::remove(path);
    writeFile(path, bytes);
}

void setJournal(const CheckpointStore& store, const std::string& bytes) {
    replaceWith(store.journalPath(), bytes);
}

}  // namespace

TEST_CASE("checkpoint journal: base plus records reads back every instant exactly", "[checkpoint][journal]") {
    TempDir dir;
    CheckpointStore store((dir / "checkpoint").string(), 1U << 30);  // no compaction here
    World world;
    world.events_per_step = 20;
    REQUIRE(store.wantsBase());
    for (int i = 0; i < 8; ++i) {
        world.step();
    }
    world.checkpoint(store);
    CHECK(store.basesWritten() == 1);
    // The base is the single-file format, byte for byte: older versions read it.
    CHECK(readFile(store.path()) == rollguard::agent::encodeCheckpoint(world.full()));
    const std::uint64_t base_bytes = store.baseBytes();
    for (int i = 0; i < 60; ++i) {
        world.step();
        REQUIRE_FALSE(store.wantsBase());
        const std::uint64_t before = store.bytesWritten();
        world.checkpoint(store);
        const std::uint64_t record = store.bytesWritten() - before;
        CHECK(record < base_bytes);
        CheckpointLoad load;
        const Checkpoint got = readOk(store, &load);
        CHECK(load.journal_records == static_cast<std::size_t>(i + 1));
        CHECK(load.journal_note.empty());
        requireSameState(got, world.full(), world.now);
    }
    CHECK(store.basesWritten() == 1);
    // What a second brings is a fraction of the whole: with 1 min windows full, a record
    // is a few slots, the base every slot.
    const std::uint64_t before = store.bytesWritten();
    for (int i = 0; i < 4; ++i) {
        world.step();
    }
    world.checkpoint(store);
    const std::uint64_t second = store.bytesWritten() - before;
    CHECK(second * 4 < rollguard::agent::encodeCheckpoint(world.full()).size());
    struct stat st {};
    REQUIRE(::stat(store.journalPath().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat(store.path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(store.journalBytes() == static_cast<std::uint64_t>(std::filesystem::file_size(store.journalPath())));
}

TEST_CASE("checkpoint journal: cut at every byte, it reads back the last complete record", "[checkpoint][journal]") {
    TempDir dir;
    CheckpointStore store((dir / "checkpoint").string(), 1U << 30);
    World world;
    world.step();
    world.checkpoint(store);
    const std::uint64_t header = store.journalBytes();
    std::vector<std::uint64_t> ends{header};  // journal size after each record
    std::vector<std::string> states{rollguard::agent::encodeCheckpoint(readOk(store))};
    for (int i = 0; i < 6; ++i) {
        world.step();
        world.step();
        world.checkpoint(store);
        ends.push_back(store.journalBytes());
        states.push_back(rollguard::agent::encodeCheckpoint(readOk(store)));
    }
    const std::string journal = readFile(store.journalPath());
    REQUIRE(journal.size() == ends.back());
    for (std::size_t cut = 0; cut <= journal.size(); ++cut) {
        setJournal(store, journal.substr(0, cut));
        std::size_t complete = 0;  // records wholly inside the cut
        while (complete + 1 < ends.size() && ends[complete + 1] <= cut) {
            ++complete;
        }
        CheckpointLoad load;
        const Checkpoint got = readOk(store, &load);
        INFO("cut at " << cut << " of " << journal.size());
        REQUIRE(load.journal_records == complete);
        REQUIRE(rollguard::agent::encodeCheckpoint(got) == states[complete]);
        const bool at_boundary = cut == ends[complete];
        REQUIRE(load.journal_note.empty() == at_boundary);
        if (cut >= header && !at_boundary) {
            REQUIRE(load.journal_torn_tail);
        }
    }
    // A base cut short is refused whole, with its journal: never half-used.
    setJournal(store, journal);
    const std::string base = readFile(store.path());
    for (std::size_t cut = 0; cut < base.size(); cut += 7) {
        replaceWith(store.path(), base.substr(0, cut));
        std::string why;
        CHECK_FALSE(store.read(why).has_value());
        CHECK_FALSE(why.empty());
    }
}

TEST_CASE("checkpoint journal: damaged bytes are refused; the state before them is used", "[checkpoint][journal]") {
    TempDir dir;
    CheckpointStore store((dir / "checkpoint").string(), 1U << 30);
    World world;
    world.step();
    world.checkpoint(store);
    std::vector<std::uint64_t> ends{store.journalBytes()};
    std::vector<std::string> states{rollguard::agent::encodeCheckpoint(readOk(store))};
    for (int i = 0; i < 4; ++i) {
        world.step();
        world.checkpoint(store);
        ends.push_back(store.journalBytes());
        states.push_back(rollguard::agent::encodeCheckpoint(readOk(store)));
    }
    const std::string journal = readFile(store.journalPath());
    for (std::size_t at = 0; at < journal.size(); ++at) {
        std::string damaged = journal;
        damaged[at] = static_cast<char>(damaged[at] ^ 0x41);
        setJournal(store, damaged);
        // A byte of record k (or of the header: k = 0) damaged: records before it are used.
        std::size_t k = 0;
        while (k + 1 < ends.size() && ends[k] <= at) {
            ++k;
        }
        const std::size_t used = at < ends[0] ? 0 : k - 1;
        CheckpointLoad load;
        const Checkpoint got = readOk(store, &load);
        INFO("byte " << at << " damaged");
        REQUIRE(load.journal_records == used);
        REQUIRE_FALSE(load.journal_note.empty());
        REQUIRE(rollguard::agent::encodeCheckpoint(got) == states[used]);
    }
    // A damaged base is refused with a reason naming the file.
    setJournal(store, journal);
    std::string base = readFile(store.path());
    base[base.size() / 2] = static_cast<char>(base[base.size() / 2] ^ 0x41);
    writeFile(store.path(), base);
    std::string why;
    CHECK_FALSE(store.read(why).has_value());
    CHECK(why.find("checksum mismatch") != std::string::npos);
    CHECK(why.find(store.path()) != std::string::npos);
}

TEST_CASE("checkpoint journal: compaction writes a new base; an interrupted one leaves a complete state",
          "[checkpoint][journal]") {
    TempDir dir;
    CheckpointStore store((dir / "checkpoint").string(), 0);  // compact once the journal outgrows the base
    World world;
    world.events_per_step = 10;
    for (int i = 0; i < 400; ++i) {
        world.step();
        const bool base = store.wantsBase();
        world.checkpoint(store);
        if (base) {
            // A new base and an empty journal for it.
            CHECK(std::filesystem::file_size(store.journalPath()) == store.journalBytes());
            CHECK(store.journalBytes() < 64);
        }
        // The journal never costs more than the base (and one record).
        CHECK(store.journalBytes() < 2 * store.baseBytes() + 4096);
        if (i % 10 == 0 || base) {
            requireSameState(readOk(store), world.full(), world.now);
        }
    }
    CHECK(store.basesWritten() >= 3);
    CHECK(store.bytesWritten() < 400 * rollguard::agent::encodeCheckpoint(world.full()).size() / 4);

    // A crash after the new base's rename, before its journal's: the old journal names the
    // old base and is ignored; the new base alone is the newest complete state.
    while (!store.wantsBase()) {
        world.step();
        world.checkpoint(store);
    }
    const std::string old_journal = readFile(store.journalPath());
    world.step();
    world.checkpoint(store);  // a base
    const Checkpoint at_base = world.full();
    setJournal(store, old_journal);
    CheckpointLoad load;
    const Checkpoint got = readOk(store, &load);
    CHECK(load.journal_records == 0);
    CHECK(load.journal_note.find("another base") != std::string::npos);
    requireSameState(got, at_base, world.now);
}

TEST_CASE("checkpoint journal: an old single-file checkpoint is read as a base without a journal",
          "[checkpoint][journal]") {
    TempDir dir;
    World world;
    for (int i = 0; i < 20; ++i) {
        world.step();
    }
    // What the previous versions wrote: the whole checkpoint in one file, no journal.
    const Checkpoint old = world.full();
    writeFile(dir / "checkpoint", rollguard::agent::encodeCheckpoint(old));
    CheckpointStore store((dir / "checkpoint").string());
    CheckpointLoad load;
    const Checkpoint got = readOk(store, &load);
    CHECK(load.journal_records == 0);
    CHECK(load.journal_note.empty());
    CHECK(rollguard::agent::encodeCheckpoint(got) == rollguard::agent::encodeCheckpoint(old));
    std::string why;
    REQUIRE(rollguard::agent::readCheckpoint((dir / "checkpoint").string(), why).has_value());

    // The upgraded daemon's first checkpoint is a base; then it appends.
    REQUIRE(store.wantsBase());
    world.step();
    world.checkpoint(store);
    world.step();
    world.checkpoint(store);
    requireSameState(readOk(store), world.full(), world.now);

    // A journal beside an old-format file that does not name it (a downgrade wrote the
    // file since) is ignored.
    world.step();
    writeFile(dir / "checkpoint", rollguard::agent::encodeCheckpoint(world.full()));
    const Checkpoint downgraded = readOk(store, &load);
    CHECK(load.journal_records == 0);
    CHECK_FALSE(load.journal_note.empty());
    requireSameState(downgraded, world.full(), world.now);
}

TEST_CASE("checkpoint journal: a failed append makes the next checkpoint a base", "[checkpoint][journal]") {
    TempDir dir;
    CheckpointStore store((dir / "checkpoint").string(), 1U << 30);
    World world;
    world.step();
    world.checkpoint(store);
    world.step();
    world.checkpoint(store);
    // Something else wrote to the journal (or a write went half through): no append after it.
    rollguard::testing::appendFile(store.journalPath(), "garbage");
    world.step();
    const auto err = world.append(store);
    REQUIRE(err.has_value());
    CHECK(store.wantsBase());
    world.checkpoint(store);  // the base
    CHECK(store.basesWritten() == 2);
    world.step();
    world.checkpoint(store);
    CheckpointLoad load;
    requireSameState(readOk(store, &load), world.full(), world.now);
    CHECK(load.journal_records == 1);
}
