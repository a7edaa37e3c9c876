// GET /readyz and /api/v1/gate: the verdicts progressive-delivery tools (Argo Rollouts,
// Flagger) and Kubernetes probes ask for, computed from one status snapshot.

#include <algorithm>
#include <string>
#include <vector>

#include "rollguard/agent/json_writer.h"
#include "rollguard/exporters/http_server.h"

namespace rollguard::exporters {

namespace {

bool blocks(rules::AlertState s) {
    return s == rules::AlertState::Pending || s == rules::AlertState::Firing;
}

bool covered(const agent::StatusSnapshot::Rule& r, const GateQuery& query) {
    if (query.rules.empty()) {
        return r.severity == "critical";
    }
    return std::find(query.rules.begin(), query.rules.end(), r.name) != query.rules.end();
}

}  // namespace

std::vector<std::string> notReadyReasons(const agent::StatusSnapshot& snapshot) {
    std::vector<std::string> reasons;
    if (snapshot.ticks == 0) {
        reasons.emplace_back("the rules have not been evaluated yet");
    }
    if (!snapshot.preflight_checked &&
        std::any_of(snapshot.hooks.begin(), snapshot.hooks.end(), [](const auto& h) { return h.gating; })) {
        reasons.emplace_back("the hooks' preflight has not finished yet");
    }
    for (const auto& h : snapshot.hooks) {
        if (!h.gating || h.ready) {
            continue;
        }
        if (h.problems.empty()) {
            reasons.push_back("hook " + h.name + " failed its preflight");
        }
        for (const auto& problem : h.problems) {
            reasons.push_back("hook " + h.name + " cannot work: " + problem);
        }
    }
    return reasons;
}

bool isReady(const agent::StatusSnapshot& snapshot) {
    return notReadyReasons(snapshot).empty();
}

GateReply renderGate(const agent::StatusSnapshot& s, const GateQuery& query) {
    std::vector<std::string> unknown;
    for (const auto& name : query.rules) {
        const bool known = std::any_of(s.rules.begin(), s.rules.end(), [&](const auto& r) { return r.name == name; });
        if (!known && std::find(unknown.begin(), unknown.end(), name) == unknown.end()) {
            unknown.push_back(name);
        }
    }
    agent::JsonWriter w;
    if (!unknown.empty()) {
        std::string names;
        for (const auto& n : unknown) {
            names += (names.empty() ? "" : ", ") + n;
        }
        w.beginObject();
        w.key("healthy").value(false);
        w.key("error").value("no rule named " + names + " in the config; ?rules= takes rule names, comma-separated");
        w.endObject();
        return {400, w.str() + "\n"};
    }

    const std::vector<std::string> not_ready = notReadyReasons(s);
    const bool ready = not_ready.empty();
    std::size_t checked = 0;
    std::vector<const agent::StatusSnapshot::Rule*> blocking;
    for (const auto& r : s.rules) {
        if (!covered(r, query)) {
            continue;
        }
        ++checked;
        if (blocks(r.state)) {
            blocking.push_back(&r);
        }
    }
    const bool healthy = ready && blocking.empty();

    w.beginObject();
    w.key("healthy").value(healthy);
    w.key("ready").value(ready);
    w.key("reason");
    if (!ready) {
        w.value(not_ready.size() == 1 ? not_ready.front()
                                      : not_ready.front() + " (and " + std::to_string(not_ready.size() - 1) +
                                            " more reason(s) in not_ready)");
    } else if (!blocking.empty()) {
        w.value(std::to_string(blocking.size()) + " rule(s) pending or firing");
    } else {
        w.value("no rule pending or firing");
    }
    w.key("evaluated_at");
    if (s.last_tick) {
        w.value(agent::formatRfc3339(*s.last_tick));
    } else {
        w.null();
    }
    w.key("not_ready").beginArray();
    for (const auto& reason : not_ready) {
        w.value(reason);
    }
    w.endArray();
    w.key("rules_checked").value(static_cast<std::uint64_t>(checked));
    w.key("blocking").beginArray();
    for (const auto* r : blocking) {
        w.beginObject();
        w.key("rule").value(r->name);
        w.key("group").value(r->group);
        w.key("severity").value(r->severity);
        w.key("state").value(rules::toString(r->state));
        w.key("value");
        if (r->value) {
            w.value(*r->value);
        } else {
            w.null();
        }
        w.key("threshold").value(r->threshold);
        w.key("comparison").value(r->comparison);
        w.key("since");
        if (r->since) {
            w.value(agent::formatRfc3339(*r->since));
        } else {
            w.null();
        }
        w.endObject();
    }
    w.endArray();
    w.endObject();
    return {healthy || query.always_200 ? 200 : 503, w.str() + "\n"};
}

}  // namespace rollguard::exporters
