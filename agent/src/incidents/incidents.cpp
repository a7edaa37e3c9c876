// Incident records: the audit trail of every rollback, and what a restarted daemon
// resumes from.
#include "rollguard/agent/incidents.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <filesystem>
#include <system_error>

#include <simdjson.h>

#include "rollguard/agent/json_writer.h"
#include "util/atomic_file.h"

namespace rollguard::agent {

const char* toString(HookStepStatus s) {
    switch (s) {
        case HookStepStatus::Pending:
            return "pending";
        case HookStepStatus::Running:
            return "running";
        case HookStepStatus::Ok:
            return "ok";
        case HookStepStatus::Failed:
            return "failed";
        case HookStepStatus::Skipped:
            return "skipped";
    }
    return "unknown";
}

std::optional<HookStepStatus> hookStepStatusFromString(std::string_view s) {
    for (auto st : {HookStepStatus::Pending, HookStepStatus::Running, HookStepStatus::Ok, HookStepStatus::Failed,
                    HookStepStatus::Skipped}) {
        if (s == toString(st)) {
            return st;
        }
    }
    return std::nullopt;
}

namespace {

bool finished(HookStepStatus s) {
    return s == HookStepStatus::Ok || s == HookStepStatus::Failed || s == HookStepStatus::Skipped;
}

std::int64_t unixNanos(rules::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

rules::TimePoint fromUnixNanos(std::int64_t ns) {
    return rules::TimePoint{std::chrono::duration_cast<rules::TimePoint::duration>(std::chrono::nanoseconds{ns})};
}

void writeTime(JsonWriter& w, std::string_view name, rules::TimePoint t) {
    w.key(name).value(formatRfc3339(t));
    w.key(std::string(name) + "_unix_ns").value(static_cast<std::int64_t>(unixNanos(t)));
}

void writeOptional(JsonWriter& w, std::string_view name, const std::optional<double>& v) {
    if (v) {
        w.key(name).value(*v);
    }
}

}  // namespace

void IncidentRecord::addHooks(const std::vector<std::string>& names) {
    for (const auto& name : names) {
        IncidentHookStep step;
        step.hook = name;
        hooks.push_back(std::move(step));
    }
}

std::vector<std::string> IncidentRecord::remainingHooks() const {
    std::vector<std::string> out;
    for (const auto& h : hooks) {
        if (!finished(h.status)) {
            out.push_back(h.hook);
        }
    }
    return out;
}

std::vector<HookStep> IncidentRecord::finishedSteps() const {
    std::vector<HookStep> out;
    for (const auto& h : hooks) {
        if (finished(h.status)) {
            out.push_back(HookStep{h.hook, toString(h.status), h.message});
        }
    }
    return out;
}

IncidentHookStep* IncidentRecord::step(std::string_view hook) {
    for (auto& h : hooks) {
        if (h.hook == hook && !finished(h.status)) {
            return &h;
        }
    }
    return nullptr;
}

std::string incidentToJson(const IncidentRecord& r) {
    JsonWriter w;
    w.beginObject();
    w.key("format").value(1);
    w.key("id").value(r.id);
    w.key("kind").value(r.kind);
    w.key("reason").value(r.reason);
    writeTime(w, "opened", r.opened);
    w.key("complete").value(r.complete);

    const BreachEvent& e = r.event;
    w.key("event").beginObject();
    w.key("rule").value(e.rule);
    w.key("severity").value(e.severity);
    w.key("state").value(e.state);
    w.key("source").value(e.source);
    w.key("metric").value(e.metric);
    w.key("value").value(e.value);
    w.key("threshold").value(e.threshold);
    w.key("comparison").value(e.comparison);
    w.key("samples").value(static_cast<std::int64_t>(e.samples));
    w.key("window_ns").value(static_cast<std::int64_t>(e.window.count()));
    w.key("for_ns").value(static_cast<std::int64_t>(e.for_.count()));
    writeTime(w, "since", e.since);
    writeTime(w, "fired_at", e.fired_at);
    w.key("host").value(e.host);
    w.key("summary").value(e.summary);
    w.key("description").value(e.description);
    w.key("group").value(e.group);
    w.key("labels").beginObject();
    for (const auto& [k, v] : e.labels) {
        w.key(k).value(v);
    }
    w.endObject();
    w.key("reason").value(e.reason);
    w.endObject();

    w.key("stats").beginObject();
    w.key("events").value(static_cast<std::int64_t>(r.stats.events));
    w.key("errors").value(static_cast<std::int64_t>(r.stats.errors));
    writeOptional(w, "error_ratio", r.stats.error_ratio);
    writeOptional(w, "rate_per_second", r.stats.rate_per_second);
    writeOptional(w, "p50_seconds", r.stats.p50);
    writeOptional(w, "p90_seconds", r.stats.p90);
    writeOptional(w, "p99_seconds", r.stats.p99);
    writeOptional(w, "p99_9_seconds", r.stats.p999);
    writeOptional(w, "mean_seconds", r.stats.mean);
    writeOptional(w, "max_seconds", r.stats.max);
    w.endObject();

    w.key("hooks").beginArray();
    for (const auto& h : r.hooks) {
        w.beginObject();
        w.key("hook").value(h.hook);
        w.key("status").value(toString(h.status));
        w.key("message").value(h.message);
        w.key("duration_ms").value(static_cast<std::int64_t>(h.duration.count()));
        w.key("attempts").value(h.attempts);
        w.key("runs").value(h.runs);
        if (h.started) {
            writeTime(w, "started", *h.started);
        }
        if (h.finished) {
            writeTime(w, "finished", *h.finished);
        }
        w.endObject();
    }
    w.endArray();

    w.key("log_lines").beginArray();
    for (const auto& line : r.log_lines) {
        w.value(line);
    }
    w.endArray();
    w.endObject();
    return w.str() + "\n";
}

namespace {

using simdjson::dom::element;
using simdjson::dom::object;

std::string str(const object& o, const char* key) {
    std::string_view v;
    return o[key].get_string().get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
}

std::int64_t i64(const object& o, const char* key) {
    std::int64_t v = 0;
    return o[key].get_int64().get(v) == simdjson::SUCCESS ? v : 0;
}

std::optional<double> optDouble(const object& o, const char* key) {
    double v = 0;
    if (o[key].get_double().get(v) == simdjson::SUCCESS) {
        return v;
    }
    return std::nullopt;
}

double dbl(const object& o, const char* key) {
    // JsonWriter writes NaN as null; it reads back as NaN.
    return optDouble(o, key).value_or(std::numeric_limits<double>::quiet_NaN());
}

std::optional<rules::TimePoint> optTime(const object& o, const std::string& key) {
    std::int64_t v = 0;
    if (o[key + "_unix_ns"].get_int64().get(v) == simdjson::SUCCESS) {
        return fromUnixNanos(v);
    }
    return std::nullopt;
}

}  // namespace

std::optional<IncidentRecord> incidentFromJson(std::string_view json, std::string& error) {
    simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    object root;
    if (const auto err = parser.parse(padded).get_object().get(root); err != simdjson::SUCCESS) {
        error = std::string("not an incident record: ") + simdjson::error_message(err);
        return std::nullopt;
    }
    if (i64(root, "format") != 1) {
        error = "not an incident record of format 1";
        return std::nullopt;
    }
    IncidentRecord r;
    r.id = str(root, "id");
    if (r.id.empty()) {
        error = "incident record without an id";
        return std::nullopt;
    }
    r.kind = str(root, "kind");
    r.reason = str(root, "reason");
    r.opened = optTime(root, "opened").value_or(rules::TimePoint{});
    bool complete = false;
    if (root["complete"].get_bool().get(complete) == simdjson::SUCCESS) {
        r.complete = complete;
    }

    object e;
    if (root["event"].get_object().get(e) == simdjson::SUCCESS) {
        BreachEvent& ev = r.event;
        ev.rule = str(e, "rule");
        ev.severity = str(e, "severity");
        ev.state = str(e, "state");
        ev.source = str(e, "source");
        ev.metric = str(e, "metric");
        ev.value = dbl(e, "value");
        ev.threshold = dbl(e, "threshold");
        ev.comparison = str(e, "comparison");
        ev.samples = i64(e, "samples");
        ev.window = std::chrono::nanoseconds{i64(e, "window_ns")};
        ev.for_ = std::chrono::nanoseconds{i64(e, "for_ns")};
        ev.since = optTime(e, "since").value_or(rules::TimePoint{});
        ev.fired_at = optTime(e, "fired_at").value_or(rules::TimePoint{});
        ev.host = str(e, "host");
        ev.summary = str(e, "summary");
        ev.description = str(e, "description");
        ev.group = str(e, "group");
        ev.reason = str(e, "reason");
        object labels;
        if (e["labels"].get_object().get(labels) == simdjson::SUCCESS) {
            for (auto [k, v] : labels) {
                std::string_view value;
                if (v.get_string().get(value) == simdjson::SUCCESS) {
                    ev.labels.emplace_back(std::string(k), std::string(value));
                }
            }
        }
    }
    r.event.incident_id = r.id;

    object st;
    if (root["stats"].get_object().get(st) == simdjson::SUCCESS) {
        r.stats.events = i64(st, "events");
        r.stats.errors = i64(st, "errors");
        r.stats.error_ratio = optDouble(st, "error_ratio");
        r.stats.rate_per_second = optDouble(st, "rate_per_second");
        r.stats.p50 = optDouble(st, "p50_seconds");
        r.stats.p90 = optDouble(st, "p90_seconds");
        r.stats.p99 = optDouble(st, "p99_seconds");
        r.stats.p999 = optDouble(st, "p99_9_seconds");
        r.stats.mean = optDouble(st, "mean_seconds");
        r.stats.max = optDouble(st, "max_seconds");
    }

    simdjson::dom::array hooks;
    if (root["hooks"].get_array().get(hooks) == simdjson::SUCCESS) {
        for (element item : hooks) {
            object h;
            if (item.get_object().get(h) != simdjson::SUCCESS) {
                continue;
            }
            IncidentHookStep step;
            step.hook = str(h, "hook");
            const auto status = hookStepStatusFromString(str(h, "status"));
            if (step.hook.empty() || !status) {
                error = "incident record with a malformed hook entry";
                return std::nullopt;
            }
            step.status = *status;
            step.message = str(h, "message");
            step.duration = std::chrono::milliseconds{i64(h, "duration_ms")};
            step.attempts = static_cast<int>(i64(h, "attempts"));
            step.runs = static_cast<int>(i64(h, "runs"));
            step.started = optTime(h, "started");
            step.finished = optTime(h, "finished");
            r.hooks.push_back(std::move(step));
        }
    }
    simdjson::dom::array lines;
    if (root["log_lines"].get_array().get(lines) == simdjson::SUCCESS) {
        for (element item : lines) {
            std::string_view line;
            if (item.get_string().get(line) == simdjson::SUCCESS) {
                r.log_lines.emplace_back(line);
            }
        }
    }
    return r;
}

IncidentLog::IncidentLog(std::string state_dir, std::size_t max_records)
    : dir_(std::move(state_dir) + "/incidents"), max_records_(std::max<std::size_t>(max_records, 1)) {}

std::optional<std::string> IncidentLog::save(const IncidentRecord& record) {
    std::error_code ec;
    if (!std::filesystem::exists(dir_, ec)) {
        std::filesystem::create_directories(dir_, ec);
        if (ec) {
            return "cannot create " + dir_ + ": " + ec.message();
        }
        std::filesystem::permissions(dir_, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace,
                                     ec);
    }
    if (auto err = writeFileAtomically(dir_ + "/" + record.id + ".json", incidentToJson(record), 0600)) {
        return err;
    }
    if (record.complete) {
        prune();
    }
    return std::nullopt;
}

std::vector<IncidentRecord> IncidentLog::list(std::vector<std::string>* problems) const {
    std::vector<IncidentRecord> out;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
        const auto& path = it->path();
        if (path.extension() != ".json" || !it->is_regular_file(ec)) {
            continue;  // temp files of an interrupted write, anything else
        }
        std::string text;
        std::string why;
        if (!readStateFile(path.string(), text, why)) {
            if (problems) {
                problems->push_back(path.string() + ": " + (why.empty() ? "vanished" : why));
            }
            continue;
        }
        auto record = incidentFromJson(text, why);
        if (!record) {
            if (problems) {
                problems->push_back(path.string() + ": " + why);
            }
            continue;
        }
        out.push_back(std::move(*record));
    }
    std::sort(out.begin(), out.end(), [](const IncidentRecord& a, const IncidentRecord& b) {
        return a.opened != b.opened ? a.opened < b.opened : a.id < b.id;
    });
    return out;
}

std::optional<IncidentRecord> IncidentLog::find(std::string_view id_or_prefix) const {
    std::optional<IncidentRecord> found;
    for (auto& r : list()) {
        if (r.id == id_or_prefix) {
            return r;
        }
        if (r.id.compare(0, id_or_prefix.size(), id_or_prefix) == 0) {
            if (found) {
                return std::nullopt;  // ambiguous prefix
            }
            found = std::move(r);
        }
    }
    return found;
}

void IncidentLog::prune() {
    auto records = list();
    std::size_t completed = 0;
    for (const auto& r : records) {
        completed += r.complete ? 1 : 0;
    }
    std::error_code ec;
    for (const auto& r : records) {
        if (completed <= max_records_) {
            break;
        }
        if (r.complete) {
            std::filesystem::remove(dir_ + "/" + r.id + ".json", ec);
            --completed;
        }
    }
}

std::vector<std::string> tailLines(const std::string& path, std::optional<std::uint64_t> end, std::size_t max_lines,
                                   std::size_t max_line_bytes) {
    std::vector<std::string> out;
    if (max_lines == 0) {
        return out;
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return out;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return out;
    }
    std::uint64_t stop = static_cast<std::uint64_t>(st.st_size);
    if (end && *end < stop) {
        stop = *end;
    }
    constexpr std::uint64_t kMaxRead = 1 << 20;
    const std::uint64_t begin = stop > kMaxRead ? stop - kMaxRead : 0;
    std::string buf(static_cast<std::size_t>(stop - begin), '\0');
    std::size_t got = 0;
    while (got < buf.size()) {
        const ssize_t n = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(begin + got));
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    buf.resize(got);
    // Only complete lines: drop a partial last line (no newline yet).
    const auto last_nl = buf.rfind('\n');
    if (last_nl == std::string::npos) {
        return out;
    }
    std::string_view text(buf.data(), last_nl);
    while (out.size() < max_lines) {
        const auto nl = text.rfind('\n');
        // With a cut start (begin > 0) the first piece may be a partial line: leave it.
        if (nl == std::string_view::npos && begin > 0) {
            break;
        }
        std::string_view line = nl == std::string_view::npos ? text : text.substr(nl + 1);
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (line.size() > max_line_bytes) {
            out.emplace_back(std::string(line.substr(0, max_line_bytes)) + "\xE2\x80\xA6");
        } else {
            out.emplace_back(line);
        }
        if (nl == std::string_view::npos) {
            break;
        }
        text = text.substr(0, nl);
    }
    std::reverse(out.begin(), out.end());
    return out;
}

}  // namespace rollguard::agent
