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
