// Ingest throughput: parse-only, the full tailer path, and a `wc -l`-style baseline over
// the same file of ~1 million realistic access-log lines. Prints figures, asserts nothing.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "rollguard/agent/config.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/sliding_window.h"

namespace {

using namespace rollguard::agent;

constexpr int kLines = 1'000'000;

/// The generated file and its lines, built once per process and removed at exit.
struct Corpus {
    std::string dir;
    std::string path;
    std::string text;
    std::vector<std::string_view> lines;

    Corpus() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/rollguard-bench-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        dir = tmpl;
        path = dir + "/access.log";

        static const char* const kMethods[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
        static const char* const kRoutes[] = {"/api/v1/orders", "/api/v1/orders/{id}", "/api/v1/users/{id}/cart",
                                              "/healthz", "/api/v1/search", "/static/app.js"};
        static const char* const kAgents[] = {"Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1",
                                              "okhttp/4.10.0", "Go-http-client/1.1"};
        std::mt19937_64 rng(42);
        std::lognormal_distribution<double> latency(3.0, 0.8);  // ms, median ~20
        std::uniform_int_distribution<int> pct(0, 999);
        text.reserve(static_cast<std::size_t>(kLines) * 240);
        char buf[512];
        for (int i = 0; i < kLines; ++i) {
            const int p = pct(rng);
            const int status = p < 5 ? 503 : (p < 20 ? 404 : (p < 60 ? 201 : 200));
            const int n = std::snprintf(
                buf, sizeof buf,
                R"({"ts":"2024-05-01T10:%02d:%02d.%03dZ","level":"info","method":"%s","route":"%s",)"
                R"("status":%d,"duration_ms":%.3f,"bytes":%d,"user_agent":"%s",)"
                R"("trace_id":"%016llx%016llx"})"
                "\n",
                (i / 60000) % 60, (i / 1000) % 60, i % 1000, kMethods[rng() % 6], kRoutes[rng() % 6], status,
                latency(rng), static_cast<int>(rng() % 50000), kAgents[rng() % 4],
                static_cast<unsigned long long>(rng()), static_cast<unsigned long long>(rng()));
            text.append(buf, static_cast<std::size_t>(n));
        }
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (f == nullptr || std::fwrite(text.data(), 1, text.size(), f) != text.size()) {
            throw std::runtime_error("cannot write " + path);
        }
        std::fclose(f);
        std::string_view rest(text);
        while (!rest.empty()) {
            const auto nl = rest.find('\n');
            lines.push_back(rest.substr(0, nl));
            rest.remove_prefix(nl + 1);
        }
    }
    ~Corpus() {
        std::remove(path.c_str());
        ::rmdir(dir.c_str());
    }
};

Corpus& corpus() {
    static Corpus c;
    return c;
}

LogSourceConfig config() {
    LogSourceConfig c;
    c.name = "bench";
    c.paths = {corpus().path};
    c.read_from = ReadFrom::Beginning;
    LatencyField lf;
    lf.field = "duration_ms";
    lf.unit = LatencyUnit::Milliseconds;
    c.latency = lf;
    c.error.kind = ErrorPredicate::Kind::NumberAtLeast;
    c.error.field = "status";
    c.error.gte = 500;
    return c;
}

void BM_LineParserParse(benchmark::State& state) {
    const auto& lines = corpus().lines;
    LineParser parser(config());
    std::size_t bytes = 0;
    for (auto _ : state) {
        for (const auto line : lines) {
            benchmark::DoNotOptimize(parser.parse(line));
        }
        bytes += corpus().text.size();
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(lines.size()));
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

/// The batch path over the whole text, in 256 KiB pieces cut at a newline as the tailer
/// reads them.
void BM_LineParserParseMany(benchmark::State& state) {
    const std::string_view text = corpus().text;
    LineParser parser(config());
    std::int64_t ok = 0;
    for (auto _ : state) {
        std::string_view rest = text;
        while (!rest.empty()) {
            const std::size_t cut = rest.size() <= 256 * 1024 ? rest.size() : rest.rfind('\n', 256 * 1024) + 1;
            for (const auto& r : parser.parseMany(rest.substr(0, cut))) {
                ok += r.parsed.ok ? 1 : 0;
            }
            rest.remove_prefix(cut);
        }
    }
    if (ok != state.iterations() * kLines) {
        state.SkipWithError("unexpected bad lines");
    }
    state.SetItemsProcessed(state.iterations() * kLines);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(text.size()));
}

void BM_TailerPollOnce(benchmark::State& state) {
    IntervalRecorder recorder;
    std::int64_t lines = 0;
    for (auto _ : state) {
        LogTailer tailer(config(), recorder);
        tailer.pollOnce();
        lines += static_cast<std::int64_t>(tailer.counters().lines);
        state.PauseTiming();
        if (tailer.counters().badTotal() != 0 || recorder.take().events != kLines) {
            state.SkipWithError("unexpected line counts");
        }
        state.ResumeTiming();
    }
    state.SetItemsProcessed(lines);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(corpus().text.size()));
}

void BM_BaselineCountNewlines(benchmark::State& state) {
    std::vector<char> buf(256 * 1024);
    std::int64_t lines = 0;
    for (auto _ : state) {
        const int fd = ::open(corpus().path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            state.SkipWithError("open failed");
            break;
        }
        ssize_t n = 0;
        while ((n = ::read(fd, buf.data(), buf.size())) > 0) {
            const char* p = buf.data();
            const char* end = p + n;
            while (const void* nl = std::memchr(p, '\n', static_cast<std::size_t>(end - p))) {
                ++lines;
                p = static_cast<const char*>(nl) + 1;
            }
        }
        ::close(fd);
    }
    state.SetItemsProcessed(lines);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(corpus().text.size()));
}

}  // namespace

BENCHMARK(BM_LineParserParse)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LineParserParseMany)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TailerPollOnce)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BaselineCountNewlines)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
