// preflightHook: whether a hook's action can work, checked without side effects.
#include <string>
#include <utility>
#include <vector>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

namespace rollguard::agent {

HookPreflight preflightHook(const HookConfig& config) {
    HookPreflight out;
    out.hook = config.name;
    switch (config.type) {
        case HookType::EnvFile:
        case HookType::JsonFile:
        case HookType::TomlFile:
            out.problems = detail::preflightFileHook(config);
            break;
        case HookType::Webhook:
        case HookType::Script:
        case HookType::Alertmanager:
            break;
    }
    out.ready = out.problems.empty();
    return out;
}

}  // namespace rollguard::agent
