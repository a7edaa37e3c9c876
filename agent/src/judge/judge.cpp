#include "rollguard/agent/judge.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include <simdjson.h>

#include "rollguard/agent/scrape_loop.h"

namespace rollguard::agent {

struct Judge::Slot {
    rules::Selection selection;
    std::string key;  // canonical text: rules with equal selections share the slot
    std::vector<std::chrono::nanoseconds> windows;
    // Routing state, guarded by Source::routing (the tailer's router writes it).
    std::unique_ptr<rules::GroupTable> groups;
    std::map<std::string, std::uint32_t, std::less<>> stream_of_group;
    // The evaluation thread's view: (group, stream id) of the streams it has adopted.
    std::vector<std::pair<std::string, std::uint32_t>> streams;
};

struct Judge::Source {
    std::string name;
    std::vector<std::string> label_names;
    HistogramSettings settings;
    std::chrono::nanoseconds lateness{0};
    /// What one stamp of its series stands for (Series, stamp_span): the judge's tick for
    /// an event-time source (one group of event time a tick), the collection interval for
    /// the others.
    std::chrono::nanoseconds stamp_span{0};
    bool fetch_error = false;  // scrape streams: the last scrape failed
    std::vector<std::chrono::nanoseconds> stream0_windows;
    std::vector<std::unique_ptr<Slot>> slots;    // fixed after construction
    std::vector<std::unique_ptr<Series>> streams;  // evaluation thread; [0] = everything

    std::mutex routing;  // guards the slots' routing state and `assigned`
    /// Streams the router has assigned, by id - 1: (slot, group).
    std::vector<std::pair<std::size_t, std::string>> assigned;
};

namespace {

std::string selectionKey(const rules::Selection& s) {
    std::string key;
    for (const auto& m : s.matchers) {
        key += m.label + rules::toString(m.op) + m.value + '\x1f';
    }
    key += '|';
    for (const auto& g : s.group_by) {
        key += g + '\x1f';
    }
    return key + '|' + std::to_string(s.max_groups);
}

void addWindowOnce(std::vector<std::chrono::nanoseconds>& windows, std::chrono::nanoseconds w) {
    if (std::find(windows.begin(), windows.end(), w) == windows.end()) {
        windows.push_back(w);
    }
}

std::int64_t nanosOf(const struct timespec& ts) {
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

Judge::Judge(const Config& config, std::chrono::nanoseconds collect_every)
    : engine_(config.rules), tick_(config.agent.tick) {
    const std::chrono::nanoseconds arrival_span =
        collect_every.count() > 0 && collect_every < tick_ ? collect_every : tick_;
    for (const auto& cfg : config.sources) {
        auto source = std::make_unique<Source>();
        source->name = cfg.name;
        for (const auto& label : cfg.labels) {
            source->label_names.push_back(label.name);
        }
        source->settings = histogramSettingsFor(cfg);
        source->lateness = cfg.lateness;
        source->stamp_span = cfg.time == TimeMode::Event ? tick_ : arrival_span;
        source->streams.push_back(std::make_unique<Series>(source->settings, source->stamp_span));
        sources_.push_back(std::move(source));
    }
    for (const auto& scrape : config.scrapes) {
        for (const auto& stream : scrapeStreams(scrape)) {
            auto source = std::make_unique<Source>();
            source->name = stream.name;
            source->label_names = stream.labels;
            source->settings = histogramSettingsFor(stream);
            source->stamp_span = arrival_span;
            source->streams.push_back(std::make_unique<Series>(source->settings, source->stamp_span));
            sources_.push_back(std::move(source));
        }
    }
    for (const auto& rule : engine_.rules()) {
        RuleRef ref;
        ref.window = rule.window;
        ref.source = sourceIndex(rule.source);
        if (ref.source != npos) {
            Source& source = *sources_[ref.source];
            // Stream 0 keeps every rule's window, selections included: statsFor() is the
            // rule's ungrouped view, and a window registered later would start empty.
            addWindowOnce(source.stream0_windows, rule.window);
            source.streams[0]->addWindow(rule.window);
            if (!rule.selection.empty()) {
                ref.slot = slotFor(source, rule.selection, rule.window);
            }
            if (rule.baseline.kind == rules::BaselineKind::Selection) {
                // The baseline is split like the rule, so group g meets group g.
                rules::Selection baseline = rule.baseline.selection;
                if (baseline.group_by.empty()) {
                    baseline.group_by = rule.selection.group_by;
                    baseline.max_groups = rule.selection.max_groups;
                }
                ref.baseline_slot = slotFor(source, baseline, rule.window);
            }
        }
        rules_.push_back(ref);
    }
}

Judge::~Judge() = default;

std::size_t Judge::slotFor(Source& source, const rules::Selection& selection, std::chrono::nanoseconds window) {
    const std::string key = selectionKey(selection);
    for (std::size_t i = 0; i < source.slots.size(); ++i) {
        if (source.slots[i]->key == key) {
            addWindowOnce(source.slots[i]->windows, window);
            return i;
        }
    }
    auto slot = std::make_unique<Slot>();
    slot->selection = selection;
    slot->key = key;
    slot->windows.push_back(window);
    slot->groups = std::make_unique<rules::GroupTable>(slot->selection);
    source.slots.push_back(std::move(slot));
    return source.slots.size() - 1;
}

const std::string& Judge::sourceName(std::size_t source) const {
    return sources_.at(source)->name;
}

std::size_t Judge::sourceIndex(std::string_view name) const {
    for (std::size_t i = 0; i < sources_.size(); ++i) {
        if (sources_[i]->name == name) {
            return i;
        }
    }
    return npos;
}

std::size_t Judge::memoryBytes(std::size_t source) const {
    std::size_t bytes = 0;
    for (const auto& stream : sources_.at(source)->streams) {
        bytes += stream->memoryBytes();
    }
    return bytes;
}

Series& Judge::series(std::size_t source) { return *sources_.at(source)->streams[0]; }
const Series& Judge::series(std::size_t source) const { return *sources_.at(source)->streams[0]; }

StreamRouter Judge::routerFor(std::size_t source_index) {
    Source* source = sources_.at(source_index).get();
    if (source->slots.empty()) {
        return {};
    }
    return [source](const LabelSet& labels, std::vector<std::uint32_t>& streams) {
        std::lock_guard lock(source->routing);
        for (std::size_t i = 0; i < source->slots.size(); ++i) {
            Slot& slot = *source->slots[i];
            const auto route = slot.groups->route(source->label_names, labels);
            if (!route.matched) {
                continue;
            }
            auto it = slot.stream_of_group.find(route.group);
            if (it == slot.stream_of_group.end()) {
                source->assigned.emplace_back(i, route.group);
                it = slot.stream_of_group.emplace(route.group, static_cast<std::uint32_t>(source->assigned.size()))
                         .first;
            }
            streams.push_back(it->second);
        }
    };
}

void Judge::adoptNewStreams(Source& source) {
    std::lock_guard lock(source.routing);
    while (source.streams.size() <= source.assigned.size()) {
        const auto id = static_cast<std::uint32_t>(source.streams.size());
        const auto& [slot_index, group] = source.assigned[id - 1];
        Slot& slot = *source.slots[slot_index];
        auto series = std::make_unique<Series>(source.settings, source.stamp_span);
        for (const auto w : slot.windows) {
            series->addWindow(w);
        }
        source.streams.push_back(std::move(series));
        slot.streams.emplace_back(group, id);
    }
}

void Judge::add(std::size_t source, rules::TimePoint now, const IntervalStats& interval) {
    sources_.at(source)->streams[0]->add(now, interval);
}

void Judge::setFetchError(std::size_t source, bool failed) {
    sources_.at(source)->fetch_error = failed;
}

bool Judge::addPart(std::size_t source_index, const RecordedPart& part, rules::TimePoint now,
                    std::chrono::nanoseconds bucket) {
    Source& source = *sources_.at(source_index);
    if (part.stream >= source.streams.size()) {
        adoptNewStreams(source);
        if (part.stream >= source.streams.size()) {
            return true;  // not a stream of ours; nothing reads it
        }
    }
    Series& series = *source.streams[part.stream];
    if (!part.at) {
        series.add(now, part.stats);
        return true;
    }
    using Duration = rules::TimePoint::duration;
    const rules::TimePoint bucket_end = *part.at + std::chrono::duration_cast<Duration>(bucket);
    if (bucket_end < now - std::chrono::duration_cast<Duration>(source.lateness)) {
        return false;
    }
    // A bucket goes where its lines would have gone had they arrived at the tick that
    // ends it: a window of W at a tick then covers exactly W of event time, as it covers
    // W of arrivals for a source without event time.
    series.addAt(std::min(bucket_end, now), part.stats);
    return true;
}

std::vector<StreamCheckpoint> Judge::saveStreams(std::size_t source_index) {
    adoptNewStreams(*sources_.at(source_index));
    std::vector<StreamCheckpoint> out;
    forEachStream(source_index, [&](const std::string& selection, const std::string& group, Series& series) {
        out.push_back(StreamCheckpoint{selection, group, series.serialize()});
    });
    return out;
}

std::size_t Judge::streamCount(std::size_t source_index) {
    Source& source = *sources_.at(source_index);
    adoptNewStreams(source);
    std::size_t n = 0;
    for (const auto& slot : source.slots) {
        n += slot->streams.size();
    }
    return n;
}

void Judge::forEachStream(std::size_t source_index,
                          const std::function<void(const std::string& selection, const std::string& group,
                                                   Series& series)>& fn) {
    // No adoption here: a tailer may assign a stream at any moment, and the count a caller
    // took from streamCount() must stay the number of calls.
    const Source& source = *sources_.at(source_index);
    for (const auto& slot : source.slots) {
        for (const auto& [group, stream] : slot->streams) {
            fn(slot->key, group, *source.streams[stream]);
        }
    }
}

std::size_t Judge::restoreStreams(std::size_t source_index, const std::vector<StreamCheckpoint>& saved) {
    Source& source = *sources_.at(source_index);
    std::size_t restored = 0;
    for (const auto& s : saved) {
        std::optional<std::uint32_t> id;
        {
            std::lock_guard lock(source.routing);
            for (std::size_t i = 0; i < source.slots.size(); ++i) {
                Slot& slot = *source.slots[i];
                if (slot.key != s.selection || slot.stream_of_group.count(s.group) != 0) {
                    continue;
                }
                source.assigned.emplace_back(i, s.group);
                id = static_cast<std::uint32_t>(source.assigned.size());
                slot.stream_of_group.emplace(s.group, *id);
                break;
            }
        }
        if (!id) {
            continue;
        }
        adoptNewStreams(source);
        if (source.streams[*id]->restore(s.series)) {
            ++restored;
        }
    }
    return restored;
}

rules::SeriesStats Judge::streamStats(const Source& source, std::uint32_t stream,
                                      std::chrono::nanoseconds window) const {
    Series& series = *source.streams.at(stream);
    return series.window(series.addWindow(window)).asSeriesStats();
}

rules::SeriesStats Judge::statsFor(std::size_t rule_index) const {
    if (rule_index >= rules_.size() || rules_[rule_index].source == npos) {
        return {};
    }
    const RuleRef& ref = rules_[rule_index];
    return streamStats(*sources_[ref.source], 0, ref.window);
}

std::optional<double> Judge::baselineFileValue(std::size_t rule_index) {
    const auto& spec = engine_.rules()[rule_index].baseline;
    FileValue& cached = baseline_files_[rule_index];
    struct stat st {};
    if (::stat(spec.file.c_str(), &st) != 0) {
        cached = FileValue{};
        return std::nullopt;
    }
    // Re-read only when the file changed: a baseline file is written by a deploy step,
    // not every second.
    if (nanosOf(st.st_mtim) != cached.mtime_ns || st.st_size != cached.size) {
        cached.mtime_ns = nanosOf(st.st_mtim);
        cached.size = st.st_size;
        cached.value = readJsonNumber(spec.file, spec.pointer);
    }
    return cached.value;
}

std::vector<rules::EvalInput> Judge::inputsFor(std::size_t rule_index) {
    std::vector<rules::EvalInput> inputs;
    const RuleRef& ref = rules_.at(rule_index);
    if (ref.source == npos) {
        inputs.emplace_back();
        return inputs;
    }
    const rules::RuleSpec& rule = engine_.rules()[rule_index];
    Source& source = *sources_[ref.source];
    std::optional<double> file_value;
    if (rule.baseline.kind == rules::BaselineKind::File) {
        file_value = baselineFileValue(rule_index);
    }
    const auto withBaseline = [&](rules::EvalInput input) {
        input.fetch_error = source.fetch_error;
        if (ref.baseline_slot) {
            const Slot& baseline = *source.slots[*ref.baseline_slot];
            for (const auto& [group, stream] : baseline.streams) {
                if (group == input.group) {
                    input.baseline = streamStats(source, stream, ref.window);
                    break;
                }
            }
        }
        input.baseline_value = file_value;
        inputs.push_back(std::move(input));
    };
    if (!ref.slot) {
        rules::EvalInput input;
        input.stats = streamStats(source, 0, ref.window);
        withBaseline(std::move(input));
        return inputs;
    }
    const Slot& slot = *source.slots[*ref.slot];
    if (slot.streams.empty() && slot.selection.group_by.empty()) {
        // Nothing matched yet: an ungrouped selection is evaluated as no data.
        rules::EvalInput input;
        input.stats.window = ref.window;
        withBaseline(std::move(input));
        return inputs;
    }
    for (const auto& [group, stream] : slot.streams) {
        rules::EvalInput input;
        input.group = group;
        input.stats = streamStats(source, stream, ref.window);
        withBaseline(std::move(input));
    }
    return inputs;
}

rules::Engine::Evaluation Judge::evaluate(rules::TimePoint now, bool on_tick) {
    for (auto& source : sources_) {
        adoptNewStreams(*source);
        // Between ticks a source stamped once a tick (event time) keeps its windows as the
        // last tick left them: its stamps lie on the tick grid, which what a window covers
        // (`rate`) counts on.
        if (!on_tick && source->stamp_span >= tick_) {
            continue;
        }
        for (auto& series : source->streams) {
            series->advance(now);
        }
    }
    return engine_.evaluateGroups(
        now, [this](const rules::RuleSpec&, std::size_t index) { return inputsFor(index); }, on_tick);
}

namespace {

/// A number, or a string holding exactly a number; V is an on-demand value or document.
template <typename V>
std::optional<double> numberIn(V& v) {
    double d = 0.0;
    if (v.get_double().get(d) == simdjson::SUCCESS) {
        return std::isfinite(d) ? std::optional(d) : std::nullopt;
    }
    std::string_view s;
    if (v.get_string().get(s) == simdjson::SUCCESS) {
        const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (ec == std::errc{} && ptr == s.data() + s.size() && std::isfinite(d)) {
            return d;
        }
    }
    return std::nullopt;
}

}  // namespace

std::optional<double> readJsonNumber(const std::string& path, const std::string& pointer) {
    simdjson::padded_string text;
    if (simdjson::padded_string::load(path).get(text) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    simdjson::ondemand::parser parser;
    simdjson::ondemand::document doc;
    if (parser.iterate(text).get(doc) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    if (pointer.empty()) {
        // The whole document, e.g. a file holding just `0.25`: simdjson cannot take a
        // scalar document as a value, so at_pointer("") would refuse it.
        bool scalar = false;
        if (doc.is_scalar().get(scalar) != simdjson::SUCCESS || !scalar) {
            return std::nullopt;
        }
        return numberIn(doc);
    }
    simdjson::ondemand::value v;
    if (doc.at_pointer(pointer).get(v) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    return numberIn(v);
}

}  // namespace rollguard::agent
