// Exposition parser throughput: a real prometheus-node-exporter 1.5 /metrics
// (bench/data/node_exporter_1.5.prom, ~57 KB) replicated to ~10 MB, next to a baseline
// that only counts newlines with memchr over the same buffer. Prints MB/s and
// samples/s; asserts nothing.
//
// Replication keeps the body valid: each family's HELP/TYPE appears once, followed by
// its samples repeated with an extra label replica="N" so that every series is unique.

#include <benchmark/benchmark.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/agent/exposition.h"

namespace {

using namespace rollguard::agent;

constexpr std::size_t kTargetBytes = 10 * 1024 * 1024;

struct Corpus {
    std::string text;
    std::size_t samples = 0;

    Corpus() {
        std::ifstream in(ROLLGUARD_SOURCE_DIR "/bench/data/node_exporter_1.5.prom", std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        const std::string sample = ss.str();
        if (sample.empty()) {
            throw std::runtime_error("cannot read bench/data/node_exporter_1.5.prom");
        }
        // Blocks: metadata lines, then the sample lines of that family.
        struct Block {
            std::vector<std::string_view> meta;
            std::vector<std::string_view> samples;
        };
        std::vector<Block> blocks;
        std::string_view rest(sample);
        while (!rest.empty()) {
            const auto nl = rest.find('\n');
            const std::string_view line = rest.substr(0, nl);
            rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
            if (line.empty()) {
                continue;
            }
            if (line[0] == '#') {
                if (blocks.empty() || !blocks.back().samples.empty()) {
                    blocks.emplace_back();
                }
                blocks.back().meta.push_back(line);
            } else {
                if (blocks.empty()) {
                    blocks.emplace_back();
                }
                blocks.back().samples.push_back(line);
            }
        }
        std::size_t sample_bytes = 0;
        for (const auto& block : blocks) {
            for (const auto line : block.samples) {
                sample_bytes += line.size() + 18;  // + the replica label
            }
        }
        const std::size_t copies = kTargetBytes / sample_bytes + 1;
        text.reserve(kTargetBytes + kTargetBytes / 4);
        for (const auto& block : blocks) {
            for (const auto m : block.meta) {
                text.append(m).push_back('\n');
            }
            for (std::size_t r = 0; r < copies; ++r) {
                const std::string label = "replica=\"" + std::to_string(r) + "\"";
                for (const auto s : block.samples) {
                    const auto brace = s.find('{');
                    const auto space = s.find(' ');
                    if (brace != std::string_view::npos && brace < space) {
                        text.append(s.substr(0, brace + 1)).append(label).push_back(',');
                        text.append(s.substr(brace + 1));
                    } else {
                        text.append(s.substr(0, space)).append("{").append(label).append("}");
                        text.append(s.substr(space));
                    }
                    text.push_back('\n');
                    ++samples;
                }
            }
        }
        const ParseResult check = parseExposition(text, ExpositionFormat::PrometheusText);
        if (!check.ok || check.samples.size() != samples) {
            throw std::runtime_error("replicated corpus does not parse: " +
                                     (check.errors.empty() ? std::string("sample count") : check.errors[0].message()));
        }
    }
};

const Corpus& corpus() {
    static const Corpus c;
    return c;
}

void BM_ParseExpositionText(benchmark::State& state) {
    const Corpus& c = corpus();
    for (auto _ : state) {
        ParseResult r = parseExposition(c.text, ExpositionFormat::PrometheusText);
        if (!r.ok) {
            state.SkipWithError("parse failed");
            break;
        }
        benchmark::DoNotOptimize(r.samples.data());
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(c.samples));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.text.size()));
    state.counters["MB"] = static_cast<double>(c.text.size()) / 1e6;
}

/// Parse, then select one family's samples by name and a label matcher, as a source
/// does after every scrape.
void BM_ParseAndSelect(benchmark::State& state) {
    const Corpus& c = corpus();
    const std::vector<LabelMatcher> idle = {{"mode", LabelMatcher::Op::Equal, "idle"}};
    std::size_t selected = 0;
    for (auto _ : state) {
        const ParseResult r = parseExposition(c.text, ExpositionFormat::PrometheusText);
        selected = r.select("node_cpu_seconds_total", idle).size();
        benchmark::DoNotOptimize(selected);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(c.samples));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.text.size()));
    state.counters["selected"] = static_cast<double>(selected);
}

void BM_BaselineMemchrNewlines(benchmark::State& state) {
    const Corpus& c = corpus();
    std::int64_t lines = 0;
    for (auto _ : state) {
        const char* p = c.text.data();
        const char* end = p + c.text.size();
        std::int64_t n = 0;
        while (const void* nl = std::memchr(p, '\n', static_cast<std::size_t>(end - p))) {
            ++n;
            p = static_cast<const char*>(nl) + 1;
        }
        benchmark::DoNotOptimize(n);
        lines = n;
    }
    // Items: the samples, so samples/s compares with the parser's.
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(c.samples));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(c.text.size()));
    state.counters["lines"] = static_cast<double>(lines);
}

}  // namespace

BENCHMARK(BM_ParseExpositionText)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ParseAndSelect)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BaselineMemchrNewlines)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
