#include "rollguard/agent/config.h"

#include <algorithm>

namespace rollguard::agent {

const char* toString(ReadinessPreflight r) {
    switch (r) {
        case ReadinessPreflight::Critical:
            return "critical";
        case ReadinessPreflight::All:
            return "all";
        case ReadinessPreflight::Off:
            return "off";
    }
    return "critical";
}

const char* toString(HookType t) {
    switch (t) {
        case HookType::EnvFile:
            return "env_file";
        case HookType::Webhook:
            return "webhook";
        case HookType::Script:
            return "script";
        case HookType::Alertmanager:
            return "alertmanager";
        case HookType::JsonFile:
            return "json_file";
        case HookType::TomlFile:
            return "toml_file";
    }
    return "unknown";
}

bool notifies(HookType t) {
    switch (t) {
        case HookType::Webhook:
        case HookType::Alertmanager:
            return true;
        case HookType::EnvFile:
        case HookType::Script:
        case HookType::JsonFile:
        case HookType::TomlFile:
            return false;
    }
    return false;
}

const char* toString(RunIf r) {
    switch (r) {
        case RunIf::Always:
            return "always";
        case RunIf::PreviousOk:
            return "previous_ok";
        case RunIf::PreviousFailed:
            return "previous_failed";
    }
    return "unknown";
}

const char* toString(WebhookFormat f) {
    switch (f) {
        case WebhookFormat::Json:
            return "json";
        case WebhookFormat::Alertmanager:
            return "alertmanager";
        case WebhookFormat::Slack:
            return "slack";
        case WebhookFormat::PagerDuty:
            return "pagerduty";
    }
    return "unknown";
}

const char* toString(ScrapeType t) {
    switch (t) {
        case ScrapeType::Prometheus:
            return "prometheus";
        case ScrapeType::Json:
            return "json";
        case ScrapeType::Health:
            return "health";
        case ScrapeType::Process:
            return "process";
        case ScrapeType::Promql:
            return "promql";
    }
    return "unknown";
}

std::vector<ScrapeStream> scrapeStreams(const ScrapeSourceConfig& source) {
    std::vector<ScrapeStream> out;
    for (const auto& s : source.series) {
        ScrapeStream stream;
        stream.name = source.name + "." + s.name;
        stream.values = s.isValue();
        stream.has_latency = s.kind == ScrapeSeriesConfig::Kind::Histogram;
        stream.labels = s.by;
        stream.max_label_sets = s.max_label_sets;
        out.push_back(std::move(stream));
    }
    const auto value = [&](const char* name) {
        ScrapeStream stream;
        stream.name = source.name + "." + name;
        stream.values = true;
        out.push_back(std::move(stream));
    };
    if (source.type != ScrapeType::Process && !source.url.empty()) {
        value("up");
    }
    if (source.type == ScrapeType::Health) {
        ScrapeStream checks;
        checks.name = source.name + ".checks";
        checks.has_latency = true;
        out.push_back(std::move(checks));
    }
    if (source.type == ScrapeType::Process) {
        for (const char* name : {"rss_bytes", "cpu_percent", "open_fds", "threads", "processes"}) {
            value(name);
        }
    }
    return out;
}

const ScrapeSourceConfig* Config::findScrape(std::string_view name) const {
    for (const auto& s : scrapes) {
        if (s.name == name) {
            return &s;
        }
    }
    return nullptr;
}

const LogSourceConfig* Config::findSource(std::string_view name) const {
    for (const auto& s : sources) {
        if (s.name == name) {
            return &s;
        }
    }
    return nullptr;
}

bool usesRolloutPercent(const HookConfig& hook) {
    const auto uses = [](std::string_view v) { return v.find(kRolloutPercentPlaceholder) != std::string_view::npos; };
    for (const auto& [name, value] : hook.set) {
        if (uses(value)) {
            return true;
        }
    }
    for (const auto& setting : hook.flag_set) {
        if (const auto* text = std::get_if<std::string>(&setting.value); text != nullptr && uses(*text)) {
            return true;
        }
    }
    for (const auto& [name, value] : hook.env) {
        if (uses(value)) {
            return true;
        }
    }
    for (std::size_t i = 1; i < hook.command.size(); ++i) {
        if (uses(hook.command[i])) {
            return true;
        }
    }
    return false;
}

const HookConfig* Config::findHook(std::string_view name) const {
    for (const auto& h : hooks) {
        if (h.name == name) {
            return &h;
        }
    }
    return nullptr;
}

}  // namespace rollguard::agent

namespace rollguard::agent {
namespace {

std::chrono::nanoseconds scaled(std::chrono::nanoseconds d, double factor,
                                std::chrono::nanoseconds floor = std::chrono::nanoseconds{0}) {
    if (d.count() == 0) {
        return d;
    }
    const auto out = std::chrono::nanoseconds{static_cast<std::int64_t>(static_cast<double>(d.count()) / factor)};
    return std::max({out, floor, std::chrono::nanoseconds{1}});
}

}  // namespace

std::chrono::nanoseconds evaluationInterval(const AgentSettings& agent) {
    if (agent.evaluation_interval) {
        return *agent.evaluation_interval;
    }
    constexpr std::chrono::nanoseconds kDefaultMost = std::chrono::milliseconds{100};
    const std::int64_t tick = agent.tick.count();
    if (tick <= kDefaultMost.count()) {
        return agent.tick;
    }
    // The fewest evaluations per tick that keep them at most 100 ms apart and on a grid
    // that contains every tick (250 ms: 62.5 ms).
    std::int64_t n = (tick + kDefaultMost.count() - 1) / kDefaultMost.count();
    while (tick % n != 0) {
        ++n;
    }
    return std::chrono::nanoseconds{tick / n};
}

void scaleTimings(Config& config, double factor) {
    if (!(factor > 0.0) || factor == 1.0) {
        return;
    }
    for (auto& rule : config.rules) {
        rule.window = scaled(rule.window, factor);
        rule.for_ = scaled(rule.for_, factor);
        rule.keep_firing_for = scaled(rule.keep_firing_for, factor);
        rule.delay = scaled(rule.delay, factor);
        rule.repeat_interval = scaled(rule.repeat_interval, factor);
        rule.baseline.learn = scaled(rule.baseline.learn, factor);
    }
    for (auto& source : config.sources) {
        source.lateness = scaled(source.lateness, factor);
    }
    constexpr std::chrono::nanoseconds kMinInterval = std::chrono::milliseconds{100};
    for (auto& scrape : config.scrapes) {
        scrape.interval = scaled(scrape.interval, factor, kMinInterval);
        scrape.timeout = std::min(scrape.interval, scaled(scrape.timeout, factor, kMinInterval));
    }
    if (config.rollout) {
        for (auto& hold : config.rollout->hold) {
            hold = scaled(hold, factor);
        }
        config.rollout->cooldown = scaled(config.rollout->cooldown, factor);
    }
}

}  // namespace rollguard::agent
