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
