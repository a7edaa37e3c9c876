#include "rollguard/agent/config.h"

namespace rollguard::agent {

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

const HookConfig* Config::findHook(std::string_view name) const {
    for (const auto& h : hooks) {
        if (h.name == name) {
            return &h;
        }
    }
    return nullptr;
}

}  // namespace rollguard::agent
