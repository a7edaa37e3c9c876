// preflightHook: whether a hook's action can work, checked without side effects.
//
// Nothing here writes, posts or runs anything: scripts are stat()ed and access()ed,
// secrets are read (as the hook reads them when it is built), URLs are parsed and their
// host looked up. File hooks are checked by detail::preflightFileHook (file_edit.cpp).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

namespace rollguard::agent {
namespace {

/// How long a host name lookup may take before the preflight gives up on it.
constexpr auto kPreflightResolveLimit = std::chrono::seconds{2};

std::string modeText(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Whether the mode bits let uid (with primary gid and supplementary groups) execute the
// file, as the kernel decides for a regular file (root needs one x bit).
bool modeAllowsExec(const struct stat& st, uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
    if (uid == 0) {
        return (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) != 0;
    }
    if (st.st_uid == uid) {
        return (st.st_mode & S_IXUSR) != 0;
    }
    if (st.st_gid == gid || std::find(groups.begin(), groups.end(), st.st_gid) != groups.end()) {
        return (st.st_mode & S_IXGRP) != 0;
    }
    return (st.st_mode & S_IXOTH) != 0;
}

void preflightScript(const HookConfig& config, std::vector<std::string>& problems) {
    if (config.command.empty() || config.command[0].empty()) {
        problems.push_back("no command configured: set command = [\"/path/to/script\", ...]");
        return;
    }
    const detail::ScriptCredentials credentials = detail::resolveScriptCredentials(config);
    if (!credentials.error.empty()) {
        problems.push_back(credentials.error + ": create it or fix the hook's user/group");
    } else if ((credentials.set_uid || credentials.set_gid) && ::geteuid() != 0) {
        // Only root switches to another user or group (setuid/setgid fail with EPERM).
        problems.push_back("rollguard runs as uid " + std::to_string(::geteuid()) + " and cannot switch to " +
                           credentials.who + ": run rollguard as root or remove the hook's user/group");
    }

    const std::string& name = config.command[0];
    const std::string path_variable = detail::scriptPathVariable(config);
    const std::string exe = detail::resolveExecutable(name, path_variable.c_str());
    if (exe.empty()) {
        problems.push_back("command '" + name + "' is not found in PATH (" + path_variable +
                           "): install it, give its absolute path, or set PATH in the hook's env");
    } else {
        struct stat st {};
        if (::stat(exe.c_str(), &st) != 0) {
            const int err = errno;
            problems.push_back(err == ENOENT ? "command " + exe + " does not exist: install it or fix the hook's command"
                                             : "command " + exe + " cannot be used: " + std::strerror(err) +
                                                   ": fix its directory's permissions or the hook's command");
        } else if (!S_ISREG(st.st_mode)) {
            problems.push_back("command " + exe + " is not a regular file" +
                               (S_ISDIR(st.st_mode) ? " (a directory)" : "") + ": point command[0] at the script");
        } else if (credentials.error.empty() && (credentials.set_uid || credentials.set_gid)) {
            // It runs as another user or group: the mode bits decide for that identity.
            const uid_t uid = credentials.set_uid ? credentials.uid : ::geteuid();
            if (!modeAllowsExec(st, uid, credentials.gid, credentials.groups)) {
                problems.push_back("command " + exe + " (mode " + modeText(st.st_mode) + ") is not executable by " +
                                   credentials.who + ": chmod +x it or give it to that user");
            }
        } else if (::faccessat(AT_FDCWD, exe.c_str(), X_OK, AT_EACCESS) != 0) {
            problems.push_back("command " + exe + " (mode " + modeText(st.st_mode) +
                               ") is not executable by rollguard's user (uid " + std::to_string(::geteuid()) +
                               "): chmod +x " + exe);
        }
    }

    if (!config.workdir.empty()) {
        struct stat st {};
        if (::stat(config.workdir.c_str(), &st) != 0) {
            const int err = errno;
            problems.push_back("working directory " + config.workdir +
                               (err == ENOENT ? " does not exist" : " cannot be used: " + std::string(std::strerror(err))) +
                               ": create it or fix the hook's workdir");
        } else if (!S_ISDIR(st.st_mode)) {
            problems.push_back("working directory " + config.workdir +
                               " is not a directory: point workdir at a directory");
        }
    }
}

// One secret as the hook reads it when it is built (readSecret), with its permissions.
void preflightSecret(const std::string& file, const std::string& env, const std::string& what,
                     const std::string& file_key, const std::string& env_key, std::vector<std::string>& problems) {
    std::string secret;
    std::string error;
    std::string permission_problem;
    if (!detail::readSecret(file, env, what, secret, error, &permission_problem)) {
        if (!file.empty()) {
            problems.push_back(error + ": create it (readable by rollguard only, chmod 600) or fix " + file_key);
        } else if (!env.empty()) {
            problems.push_back(error + " or is empty: set it in rollguard's environment or fix " + env_key);
        } else {
            problems.push_back(error + ": set " + file_key + (env_key.empty() ? "" : " or " + env_key));
        }
    }
    if (!permission_problem.empty()) {
        problems.push_back(permission_problem);
    }
}

struct ResolveState {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    int rc = 0;
};

// getaddrinfo on a detached thread, waited for at most kPreflightResolveLimit: a resolver
// that hangs must not hold the preflight (nor `rollguard check`) for its own timeouts.
// Returns "" when the host resolves, else the problem.
std::string resolveHostWithin(const std::string& host) {
    auto state = std::make_shared<ResolveState>();
    try {
        std::thread([state, host] {
            addrinfo hints{};
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            addrinfo* result = nullptr;
            const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &result);
            if (result != nullptr) {
                ::freeaddrinfo(result);
            }
            std::lock_guard lock(state->mutex);
            state->rc = rc;
            state->done = true;
            state->cv.notify_all();
        }).detach();
    } catch (const std::system_error& e) {
        return std::string("cannot look up host '") + host + "': " + e.what();
    }
    std::unique_lock lock(state->mutex);
    if (!state->cv.wait_for(lock, kPreflightResolveLimit, [&] { return state->done; })) {
        return "host '" + host + "' did not resolve within " + detail::formatSeconds(kPreflightResolveLimit) +
               ": check the name and the DNS servers in /etc/resolv.conf";
    }
    if (state->rc != 0) {
        return "host '" + host + "' does not resolve (" + ::gai_strerror(state->rc) +
               "): fix the URL or the name service";
    }
    return {};
}

// curl_url()'s view of a URL: http or https with a host, and the host resolvable.
void preflightUrl(const std::string& url, std::vector<std::string>& problems) {
    if (url.empty()) {
        problems.push_back("no url configured: set url = \"http://host:port/path\"");
        return;
    }
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> handle(curl_url(), &curl_url_cleanup);
    if (!handle) {
        problems.push_back("cannot parse the url (out of memory)");
        return;
    }
    const CURLUcode parsed = curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), 0);
    if (parsed != CURLUE_OK) {
        problems.push_back("url '" + url + "' is not a valid URL (" + curl_url_strerror(parsed) +
                           "): write it as http://host[:port]/path or https://...");
        return;
    }
    auto part = [&](CURLUPart which) {
        char* text = nullptr;
        std::string out;
        if (curl_url_get(handle.get(), which, &text, 0) == CURLUE_OK && text != nullptr) {
            out = text;
        }
        curl_free(text);
        return out;
    };
    const std::string scheme = part(CURLUPART_SCHEME);
    if (scheme != "http" && scheme != "https") {
        problems.push_back("url '" + url + "' has scheme '" + scheme + "': use http:// or https://");
        return;
    }
    std::string host = part(CURLUPART_HOST);
    if (host.empty()) {
        problems.push_back("url '" + url + "' has no host: write it as " + scheme + "://host[:port]/path");
        return;
    }
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    unsigned char address[sizeof(in6_addr)];
    if (::inet_pton(AF_INET, host.c_str(), address) == 1 || ::inet_pton(AF_INET6, host.c_str(), address) == 1) {
        return;  // an IP literal: nothing to look up
    }
    if (std::string problem = resolveHostWithin(host); !problem.empty()) {
        problems.push_back("url '" + url + "': " + problem);
    }
}

void preflightWebhook(const HookConfig& config, std::vector<std::string>& problems) {
    preflightUrl(config.url, problems);
    // The same secrets, on the same conditions, as WebhookHook reads when it is built.
    if (!config.bearer_token_file.empty() || !config.bearer_token_env.empty()) {
        preflightSecret(config.bearer_token_file, config.bearer_token_env, "bearer token", "bearer_token_file",
                        "bearer_token_env", problems);
    }
    if (!config.secret_file.empty()) {
        preflightSecret(config.secret_file, {}, "signing secret", "secret_file", {}, problems);
    }
    if (config.format == WebhookFormat::PagerDuty && config.body_template.empty()) {
        preflightSecret(config.routing_key_file, config.routing_key_env, "routing key", "routing_key_file",
                        "routing_key_env", problems);
    }
}

void preflightAlertmanager(const HookConfig& config, std::vector<std::string>& problems) {
    preflightUrl(config.url, problems);
    if (!config.bearer_token_file.empty() || !config.bearer_token_env.empty()) {
        preflightSecret(config.bearer_token_file, config.bearer_token_env, "bearer token", "bearer_token_file",
                        "bearer_token_env", problems);
    }
}

}  // namespace

HookPreflight preflightHook(const HookConfig& config) {
    HookPreflight out;
    out.hook = config.name;
    try {
        switch (config.type) {
            case HookType::EnvFile:
            case HookType::JsonFile:
            case HookType::TomlFile:
                out.problems = detail::preflightFileHook(config);
                break;
            case HookType::Webhook:
                preflightWebhook(config, out.problems);
                break;
            case HookType::Script:
                preflightScript(config, out.problems);
                break;
            case HookType::Alertmanager:
                preflightAlertmanager(config, out.problems);
                break;
        }
    } catch (const std::exception& e) {
        out.problems.push_back(std::string("the preflight failed: ") + e.what());
    }
    out.ready = out.problems.empty();
    return out;
}

std::string formatPreflightProblem(const HookConfig& config, const std::string& problem) {
    const auto& at = config.location;
    std::string where = at.file.empty() ? std::string("<config>") : at.file;
    if (at.line > 0) {
        where += ":" + std::to_string(at.line);
        if (at.column > 0) {
            where += ":" + std::to_string(at.column);
        }
    }
    return where + ": hook " + config.name + ": " + problem;
}

std::vector<std::string> gatingHooks(const Config& config, ReadinessPreflight mode) {
    std::vector<std::string> names;
    if (mode == ReadinessPreflight::Off) {
        return names;
    }
    auto gates = [&](const std::string& name) {
        if (mode == ReadinessPreflight::All) {
            return true;
        }
        for (const auto& rule : config.rules) {
            if (rule.severity == rules::Severity::Critical &&
                std::find(rule.hooks.begin(), rule.hooks.end(), name) != rule.hooks.end()) {
                return true;
            }
        }
        if (config.rollout) {
            const auto& r = *config.rollout;
            return std::find(r.hooks.begin(), r.hooks.end(), name) != r.hooks.end() ||
                   std::find(r.rollback_hooks.begin(), r.rollback_hooks.end(), name) != r.rollback_hooks.end();
        }
        return false;
    };
    for (const auto& hook : config.hooks) {
        if (gates(hook.name)) {
            names.push_back(hook.name);
        }
    }
    return names;
}

}  // namespace rollguard::agent
