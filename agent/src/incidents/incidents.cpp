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
#include "util/unix_time.h"

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
        case HookStepStatus::Spooled:
            return "spooled";
    }
    return "unknown";
}

std::optional<HookStepStatus> hookStepStatusFromString(std::string_view s) {
    for (auto st : {HookStepStatus::Pending, HookStepStatus::Running, HookStepStatus::Ok, HookStepStatus::Failed,
                    HookStepStatus::Skipped, HookStepStatus::Spooled}) {
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
    writeValueFields(w, valueReadingOf(e));
    if (!e.value_text.empty()) {
        w.key("value_text").value(e.value_text);
    }
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

namespace od = simdjson::ondemand;

/// One pass over an object's fields; `fn(key, value)` returns false to fail the parse.
template <typename Fn>
bool eachField(od::value v, Fn&& fn) {
    od::object object;
    if (v.get_object().get(object) != simdjson::SUCCESS) {
        return false;
    }
    for (auto field : object) {
        std::string_view key;
        od::value value;
        if (field.unescaped_key().get(key) != simdjson::SUCCESS || field.value().get(value) != simdjson::SUCCESS) {
            return false;
        }
        if (!fn(std::string(key), value)) {
            return false;
        }
    }
    return true;
}

template <typename Fn>
bool eachItem(od::value v, Fn&& fn) {
    od::array array;
    if (v.get_array().get(array) != simdjson::SUCCESS) {
        return false;
    }
    for (auto item : array) {
        od::value value;
        if (item.get(value) != simdjson::SUCCESS || !fn(value)) {
            return false;
        }
    }
    return true;
}

std::string text(od::value v) {
    std::string_view s;
    return v.get_string().get(s) == simdjson::SUCCESS ? std::string(s) : std::string();
}

std::int64_t integer(od::value v) {
    std::int64_t i = 0;
    return v.get_int64().get(i) == simdjson::SUCCESS ? i : 0;
}

/// A number, or nullopt for null (JsonWriter writes NaN and infinities as null).
std::optional<double> number(od::value v) {
    double d = 0;
    if (v.get_double().get(d) == simdjson::SUCCESS) {
        return d;
    }
    return std::nullopt;
}

/// `<name>_unix_ns` keys carry the exact times; the RFC 3339 twins are for people.
bool timeField(const std::string& key, std::string_view name, od::value v, std::optional<rules::TimePoint>& out) {
    if (key.size() == name.size() + 8 && key.compare(0, name.size(), name) == 0 &&
        key.compare(name.size(), 8, "_unix_ns") == 0) {
        out = fromUnixNanos(integer(v));
        return true;
    }
    return false;
}

bool readEvent(od::value v, BreachEvent& e) {
    return eachField(v, [&](const std::string& key, od::value value) {
        std::optional<rules::TimePoint> t;
        if (key == "rule") {
            e.rule = text(value);
        } else if (key == "severity") {
            e.severity = text(value);
        } else if (key == "state") {
            e.state = text(value);
        } else if (key == "source") {
            e.source = text(value);
        } else if (key == "metric") {
            e.metric = text(value);
        } else if (key == "value") {
            e.value = number(value).value_or(std::numeric_limits<double>::quiet_NaN());
        } else if (key == "threshold") {
            e.threshold = number(value).value_or(std::numeric_limits<double>::quiet_NaN());
        } else if (key == "comparison") {
            e.comparison = text(value);
        } else if (key == "samples") {
            e.samples = integer(value);
        } else if (key == "window_ns") {
            e.window = std::chrono::nanoseconds{integer(value)};
        } else if (key == "for_ns") {
            e.for_ = std::chrono::nanoseconds{integer(value)};
        } else if (timeField(key, "since", value, t)) {
            e.since = *t;
        } else if (timeField(key, "fired_at", value, t)) {
            e.fired_at = *t;
        } else if (key == "host") {
            e.host = text(value);
        } else if (key == "summary") {
            e.summary = text(value);
        } else if (key == "description") {
            e.description = text(value);
        } else if (key == "group") {
            e.group = text(value);
        } else if (key == "reason") {
            e.reason = text(value);
        } else if (key == "labels") {
            return eachField(value, [&](const std::string& name, od::value label) {
                e.labels.emplace_back(name, text(label));
                return true;
            });
        } else if (key == "baseline") {
            e.baseline = number(value);
        } else if (key == "value_text") {
            e.value_text = text(value);
        } else if (key == "mann_whitney") {
            rules::MannWhitneyResult mw;
            mw.valid = true;
            const bool ok = eachField(value, [&](const std::string& name, od::value field) {
                const double nan = std::numeric_limits<double>::quiet_NaN();
                if (name == "u") {
                    mw.u = number(field).value_or(nan);
                } else if (name == "z") {
                    mw.z = number(field).value_or(nan);
                } else if (name == "p_value") {
                    mw.p_value = number(field).value_or(nan);
                } else if (name == "n_canary") {
                    mw.n_canary = integer(field);
                } else if (name == "n_baseline") {
                    mw.n_baseline = integer(field);
                }
                return true;
            });
            mw.effect = e.value;
            e.mann_whitney = mw;
            return ok;
        }
        return true;
    });
}

bool readStats(od::value v, IncidentStats& st) {
    return eachField(v, [&](const std::string& key, od::value value) {
        if (key == "events") {
            st.events = integer(value);
        } else if (key == "errors") {
            st.errors = integer(value);
        } else if (key == "error_ratio") {
            st.error_ratio = number(value);
        } else if (key == "rate_per_second") {
            st.rate_per_second = number(value);
        } else if (key == "p50_seconds") {
            st.p50 = number(value);
        } else if (key == "p90_seconds") {
            st.p90 = number(value);
        } else if (key == "p99_seconds") {
            st.p99 = number(value);
        } else if (key == "p99_9_seconds") {
            st.p999 = number(value);
        } else if (key == "mean_seconds") {
            st.mean = number(value);
        } else if (key == "max_seconds") {
            st.max = number(value);
        }
        return true;
    });
}

bool readStep(od::value v, IncidentHookStep& step) {
    bool status_ok = false;
    const bool parsed = eachField(v, [&](const std::string& key, od::value value) {
        if (key == "hook") {
            step.hook = text(value);
        } else if (key == "status") {
            const auto status = hookStepStatusFromString(text(value));
            status_ok = status.has_value();
            step.status = status.value_or(HookStepStatus::Pending);
        } else if (key == "message") {
            step.message = text(value);
        } else if (key == "duration_ms") {
            step.duration = std::chrono::milliseconds{integer(value)};
        } else if (key == "attempts") {
            step.attempts = static_cast<int>(integer(value));
        } else if (key == "runs") {
            step.runs = static_cast<int>(integer(value));
        } else if (timeField(key, "started", value, step.started) || timeField(key, "finished", value, step.finished)) {
            // set by timeField
        }
        return true;
    });
    return parsed && status_ok && !step.hook.empty();
}

}  // namespace

std::optional<IncidentRecord> incidentFromJson(std::string_view json, std::string& error) {
    od::parser parser;
    const simdjson::padded_string padded(json);
    od::document doc;
    od::value root;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS || doc.get_value().get(root) != simdjson::SUCCESS) {
        error = "not an incident record: not JSON";
        return std::nullopt;
    }
    IncidentRecord r;
    std::int64_t format = 0;
    std::string what;
    const bool parsed = eachField(root, [&](const std::string& key, od::value value) {
        std::optional<rules::TimePoint> t;
        if (key == "format") {
            format = integer(value);
        } else if (key == "id") {
            r.id = text(value);
        } else if (key == "kind") {
            r.kind = text(value);
        } else if (key == "reason") {
            r.reason = text(value);
        } else if (timeField(key, "opened", value, t)) {
            r.opened = *t;
        } else if (key == "complete") {
            bool b = false;
            r.complete = value.get_bool().get(b) == simdjson::SUCCESS && b;
        } else if (key == "event") {
            return readEvent(value, r.event);
        } else if (key == "stats") {
            return readStats(value, r.stats);
        } else if (key == "hooks") {
            return eachItem(value, [&](od::value item) {
                IncidentHookStep step;
                if (!readStep(item, step)) {
                    what = "incident record with a malformed hook entry";
                    return false;
                }
                r.hooks.push_back(std::move(step));
                return true;
            });
        } else if (key == "log_lines") {
            return eachItem(value, [&](od::value item) {
                r.log_lines.push_back(text(item));
                return true;
            });
        }
        return true;
    });
    if (!parsed) {
        error = what.empty() ? "not an incident record: malformed JSON" : what;
        return std::nullopt;
    }
    if (format != 1) {
        error = "not an incident record of format 1";
        return std::nullopt;
    }
    if (r.id.empty()) {
        error = "incident record without an id";
        return std::nullopt;
    }
    r.event.incident_id = r.id;
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
