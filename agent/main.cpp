// rollguard: parses the command line and wires the libraries together; nothing else.
//
// Exit codes: 0 ok; 1 runtime failure (e.g. cannot listen); 2 bad usage or bad config.

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli_admin.h"
#include "rollguard/agent/admin.h"
#include "rollguard/agent/config.h"
#include "rollguard/agent/daemon.h"
#include "rollguard/agent/log_format.h"
#include "rollguard/agent/log_source.h"
#include "rollguard/agent/replay.h"
#include "rollguard/agent/timeline.h"
#include "rollguard/agent/rule_test.h"
#include "rollguard/agent/sd_notify.h"
#include "rollguard/exporters/http_server.h"
#include "rollguard/rules/clock.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

/// Prints the diagnostics of a config that did not load, and how many errors it has.
void printLoadFailure(const std::string& path, const rollguard::agent::LoadResult& result) {
    std::size_t errors = 0;
    for (const auto& d : result.diagnostics) {
        std::cerr << d.format() << "\n";
        errors += d.level == rollguard::rules::Diagnostic::Level::Error ? 1 : 0;
    }
    std::cerr << path << ": " << errors << " error(s); the configuration was not loaded\n";
}

/// Prints every diagnostic; returns the config when there were no errors.
std::optional<rollguard::agent::Config> load(const std::string& path, bool quiet_ok) {
    auto result = rollguard::agent::loadConfigFile(path);
    if (!result.ok()) {
        printLoadFailure(path, result);
        return std::nullopt;
    }
    for (const auto& d : result.diagnostics) {
        std::cerr << d.format() << "\n";
    }
    if (!quiet_ok) {
        const auto& c = *result.config;
        std::cout << path << ": OK (" << c.sources.size() + c.scrapes.size() << " source(s), " << c.rules.size() << " rule(s), "
                  << c.hooks.size() << " hook(s))\n";
    }
    return std::move(result.config);
}

/// `rollguard check --preflight`: the admin token (readable by its owner only, 32 bytes or
/// more) and every hook's preflight, each problem on stderr as "file:line:col: hook NAME:
/// problem", then a summary; 1 when the token would be refused or a hook is not ready.
int runPreflightCheck(const rollguard::agent::Config& config) {
    std::string error;
    const bool token_ok = rollguard::agent::configuredAdminToken(config.agent, error).has_value();
    if (!token_ok) {
        std::cerr << config.path << ": " << error << " (the agent would not start)\n";
    }
    std::size_t ready = 0;
    for (const auto& hook : config.hooks) {
        const auto result = rollguard::agent::preflightHook(hook);
        for (const auto& problem : result.problems) {
            std::cerr << rollguard::agent::formatPreflightProblem(hook, problem) << "\n";
        }
        ready += result.ready ? 1 : 0;
    }
    const std::size_t total = config.hooks.size();
    std::cerr << "preflight: " << total << (total == 1 ? " hook, " : " hooks, ") << ready << " ready, "
              << total - ready << " not ready\n";
    return ready == total && token_ok ? kExitOk : kExitRuntime;
}

/// Makes the default logger write to stderr in `format` at `level`; once per process.
/// Text drops its timestamp and adds the syslog priority prefix when stderr is the
/// journal (JOURNAL_STREAM matches it), as journald stamps lines itself.
void configureLogging(const std::string& level,
                      rollguard::agent::LogFormat format = rollguard::agent::LogFormat::Text) {
    auto logger = spdlog::stderr_color_mt("rollguard");
    spdlog::set_default_logger(logger);
    logger->set_formatter(rollguard::agent::makeLogFormatter(format, rollguard::agent::stderrIsJournal()));
    spdlog::set_level(spdlog::level::from_str(level));
    spdlog::flush_on(spdlog::level::trace);
}

/// On reload from `old` to `next`: applies [agent] log_format, and log_level unless
/// --log-level was given (`log_level_override` not empty: the flag wins, as at start),
/// logging each change. Called from the main thread; spdlog's level is atomic and
/// set_formatter takes the sink's lock, so threads logging meanwhile are safe.
void reapplyLogging(const rollguard::agent::AgentSettings& old, const rollguard::agent::AgentSettings& next,
                    const std::string& log_level_override) {
    using rollguard::agent::logFormatName;
    auto logger = spdlog::default_logger();
    if (next.log_format != old.log_format) {
        spdlog::info("reload: log format {} -> {} ([agent] log_format)", logFormatName(old.log_format),
                     logFormatName(next.log_format));
        logger->set_formatter(rollguard::agent::makeLogFormatter(next.log_format, rollguard::agent::stderrIsJournal()));
    }
    const std::string before(rollguard::agent::logLevelName(static_cast<int>(logger->level())));
    if (!log_level_override.empty()) {
        if (next.log_level != log_level_override && next.log_level != old.log_level) {
            spdlog::info("reload: [agent] log_level = \"{}\" not applied: --log-level {} wins", next.log_level,
                         log_level_override);
        }
    } else if (next.log_level != before) {
        spdlog::info("reload: log level {} -> {} ([agent] log_level)", before, next.log_level);
        spdlog::set_level(spdlog::level::from_str(next.log_level));
    }
}

/// The daemon `rollguard run` is serving with, which a reload replaces, and the reload
/// figures. The HTTP threads, the signal thread and the main thread share it.
struct Agent {
    explicit Agent(std::shared_ptr<rollguard::agent::Daemon> d) : daemon(std::move(d)) {}

    std::shared_ptr<rollguard::agent::Daemon> current() {
        std::lock_guard lock(mutex);
        return daemon;
    }
    rollguard::agent::StatusSnapshot snapshot() {
        auto d = current();
        auto s = d->snapshot();
        std::lock_guard lock(mutex);
        s.reloads = reloads;
        return s;
    }
    void replace(std::shared_ptr<rollguard::agent::Daemon> next, rollguard::rules::TimePoint now) {
        {
            std::lock_guard lock(mutex);
            daemon = std::move(next);
            ++reloads.ok;
            reloads.last_ok = true;
            reloads.last_success = now;
            reloads.last_error.clear();
        }
        reloaded.notify_all();
    }
    std::uint64_t reloadsDone() {
        std::lock_guard lock(mutex);
        return reloads.ok;
    }
    /// Waits until more than `before` reloads were applied.
    bool waitForReload(std::uint64_t before, std::chrono::seconds limit) {
        std::unique_lock lock(mutex);
        return reloaded.wait_for(lock, limit, [&] { return reloads.ok > before; });
    }

    std::mutex mutex;  // guards daemon, pending, reloads
    std::condition_variable reloaded;
    std::shared_ptr<rollguard::agent::Daemon> daemon;
    std::optional<rollguard::agent::Config> pending;  // a checked config waiting to be switched to
    rollguard::agent::StatusSnapshot::Reloads reloads;
    std::atomic<bool> stopping{false};
};

/// `rollguard run`. Under systemd (Type=notify) it tells the manager READY=1 once the
/// config is loaded, the sources are started and the listener is up, pings WATCHDOG=1
/// from the tick loop at least every half of WATCHDOG_USEC, and says STOPPING=1 when
/// SIGTERM or SIGINT arrives. Stopping (sources, checkpoint, rules state, queued hooks)
/// is bounded by `stop_timeout`: past it the agent exits at once, still with 0, and the
/// hooks an incident has not finished are resumed from its record at the next start.
///
/// SIGHUP and POST /api/v1/reload reload the config file: it is checked whole first (a
/// config with errors is refused, logged with file:line:col and counted, and the running
/// one carries on); then, at the end of a tick, the daemon hands its state to one built
/// from the new config (see Daemon::stopForReload). `listen` and `state_dir` only change
/// with a restart.
/// `time_scale` != 1 divides the config's timings (scaleTimings), at start and on reload.
int runAgent(const std::string& config_path, bool dry_run, const std::string& log_level_override,
             std::chrono::milliseconds stop_timeout, double time_scale) {
    // Signals are taken by a dedicated thread with sigwait, so no handler runs inside
    // library code; every thread started below inherits the blocked mask. Blocked first
    // thing, so a SIGHUP while the config loads does not kill the agent either (a
    // SIGTERM meanwhile stays pending and stops it as soon as it runs).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    // Errors are printed as text (there is no log format without a config); the warnings
    // of a config that loads go through the logger, in its format.
    auto loaded = rollguard::agent::loadConfigFile(config_path);
    if (!loaded.ok()) {
        printLoadFailure(config_path, loaded);
        return kExitUsage;
    }
    std::optional<rollguard::agent::Config> config = std::move(loaded.config);
    if (dry_run) {
        config->agent.dry_run = true;
    }
    rollguard::agent::scaleTimings(*config, time_scale);
    configureLogging(log_level_override.empty() ? config->agent.log_level : log_level_override,
                     config->agent.log_format);
    for (const auto& d : loaded.diagnostics) {
        spdlog::warn("{}", d.format());
    }

    // One daemon per state directory: two would overwrite each other's checkpoints and
    // both roll back. The lock also tells `rollguard rollback` a daemon is running.
    std::optional<rollguard::agent::StateDirLock> state_lock;
    if (!config->agent.state_dir.empty()) {
        std::string detail;
        const auto outcome = rollguard::agent::StateDirLock::tryAcquire(config->agent.state_dir, state_lock, detail);
        if (outcome == rollguard::agent::StateDirLock::Outcome::HeldByOther) {
            spdlog::error("another rollguard ({}) is running with state_dir {}; stop it or give this one its own "
                          "state_dir",
                          detail, config->agent.state_dir);
            return kExitRuntime;
        }
        if (outcome == rollguard::agent::StateDirLock::Outcome::Failed) {
            spdlog::error("state_dir: {}", detail);
            return kExitRuntime;
        }
    }
    // The TCP admin endpoints' token, re-read on every reload (a rotated token needs no
    // restart); the CLI on this host needs none (the Unix socket below).
    const auto admin_token = std::make_shared<rollguard::agent::AdminToken>();
    {
        std::string error;
        auto token = rollguard::agent::configuredAdminToken(config->agent, error);
        if (!token) {
            spdlog::error("{}; fix it, or remove the key to turn the TCP admin API off", error);
            return kExitUsage;
        }
        admin_token->set(std::move(*token));
    }

    rollguard::rules::SystemClock clock;
    const std::string listen = config->agent.listen;
    const std::string state_dir = config->agent.state_dir;
    const std::string config_text_path = config->path;
    Agent agent(std::make_shared<rollguard::agent::Daemon>(std::move(*config), clock));
    agent.reloads.last_success = clock.now();

    // A reload (SIGHUP, POST /api/v1/reload): the file is read and fully checked first;
    // a config with errors is refused and the running one carries on.
    const auto prepareReload = [&](const std::string& why, std::string& errors) -> bool {
        const auto refuse = [&] {
            spdlog::error("reload ({}) refused; the running config stays:\n{}", why, errors);
            std::lock_guard lock(agent.mutex);
            ++agent.reloads.failed;
            agent.reloads.last_ok = false;
            agent.reloads.last_error = errors;
            return false;
        };
        auto result = rollguard::agent::loadConfigFile(config_path);
        if (!result.ok()) {
            for (const auto& d : result.diagnostics) {
                if (d.level == rollguard::rules::Diagnostic::Level::Error) {
                    errors += d.format() + "\n";
                }
            }
            return refuse();
        }
        rollguard::agent::Config next = std::move(*result.config);
        auto token = rollguard::agent::configuredAdminToken(next.agent, errors);
        if (!token) {
            errors = config_path + ": " + errors + "\n";
            return refuse();
        }
        rollguard::agent::scaleTimings(next, time_scale);
        const auto running = agent.current();
        const auto& old = running->config().agent;
        // What the process holds for its lifetime stays as started.
        if (next.agent.listen != old.listen) {
            spdlog::warn("reload: [agent] listen changed to {}; the listener stays on {} until a restart",
                         next.agent.listen, old.listen);
            next.agent.listen = old.listen;
        }
        if (next.agent.state_dir != old.state_dir) {
            spdlog::warn("reload: [agent] state_dir changed to {}; {} stays in use until a restart",
                         next.agent.state_dir, old.state_dir);
            next.agent.state_dir = old.state_dir;
        }
        if (dry_run) {
            next.agent.dry_run = true;
        }
        spdlog::info("reload ({}): {} checked; switching at the end of this tick", why, config_path);
        admin_token->set(std::move(*token));
        {
            std::lock_guard lock(agent.mutex);
            agent.pending = std::move(next);
        }
        running->requestStop();
        return true;
    };

    auto admin = rollguard::cli::adminApiFor([&agent] { return agent.current(); }, admin_token);
    admin.reload = [&](const std::string&) {
        std::string errors;
        const std::uint64_t before = agent.reloadsDone();
        if (!prepareReload("POST /api/v1/reload", errors)) {
            return rollguard::exporters::AdminApi::Reply{
                400, rollguard::cli::jsonObject({{"error", "the new config has errors; the running config "
                                                           "stays"},
                                                 {"diagnostics", errors}})};
        }
        if (!agent.waitForReload(before, std::chrono::seconds{30})) {
            return rollguard::exporters::AdminApi::Reply{
                504, rollguard::cli::jsonObject({{"error", "reload queued but not applied within 30 s"}})};
        }
        return rollguard::exporters::AdminApi::Reply{200, rollguard::cli::jsonObject({{"status", "reloaded"}})};
    };
    const auto snapshot = [&agent] { return agent.snapshot(); };
    // The CLI's way in (`rollguard rollback`, `rearm`, `rollout`): a Unix socket only the
    // agent's user and root can use, so it needs no token. Without it the agent still
    // guards; only the commands cannot reach it, so a failure is logged, not fatal. Made
    // before the TCP listener: once /healthz answers, the commands can reach the agent.
    std::unique_ptr<rollguard::exporters::HttpServer> admin_socket;
    if (!state_dir.empty()) {
        try {
            admin_socket = std::make_unique<rollguard::exporters::HttpServer>(
                "unix:" + rollguard::agent::adminSocketPath(state_dir), snapshot, admin);
            spdlog::info("admin socket {} (mode 0600: rollguard rollback, rearm and rollout need no token here)",
                         rollguard::agent::adminSocketPath(state_dir));
        } catch (const std::exception& e) {
            spdlog::error("{}: `rollguard rollback`, `rearm` and `rollout` cannot reach this agent (its rules and "
                          "hooks work as usual)",
                          e.what());
        }
    }
    std::unique_ptr<rollguard::exporters::HttpServer> server;
    std::string listening;
    if (!listen.empty()) {
        try {
            server = std::make_unique<rollguard::exporters::HttpServer>(listen, snapshot, std::move(admin));
            const std::string host = listen.substr(0, listen.rfind(':'));
            listening = host + ":" + std::to_string(server->port());
            spdlog::info("listening on {}:{} (/metrics, /healthz, /readyz, /api/v1/status, /api/v1/gate{})", host,
                         server->port(),
                         admin_token->enabled() ? ", admin API with the bearer token" : "; admin API off over TCP");
        } catch (const std::exception& e) {
            spdlog::error("{}; set [agent] listen to a free address, or \"\" to disable the listener", e.what());
            return kExitRuntime;
        }
    }

    std::atomic<bool> done{false};
    std::mutex stopped_mutex;
    std::condition_variable stopped_cv;
    bool stopped = false;
    std::thread signal_thread([&] {
        const timespec timeout{0, 200'000'000};
        while (!done) {
            const int sig = sigtimedwait(&signals, nullptr, &timeout);
            if (sig == SIGINT || sig == SIGTERM) {
                const auto bound_ms = std::chrono::duration_cast<std::chrono::milliseconds>(stop_timeout).count();
                spdlog::info("received {}; stopping (at most {} ms)", sig == SIGINT ? "SIGINT" : "SIGTERM", bound_ms);
                rollguard::agent::sdNotify("STOPPING=1\nSTATUS=stopping");
                agent.stopping = true;
                agent.current()->requestStop();
                // The bound on the whole stop: TimeoutStopSec= must not have to SIGKILL us
                // in the middle of a state write, so we exit first, on our own terms.
                std::unique_lock lock(stopped_mutex);
                if (!stopped_cv.wait_for(lock, stop_timeout, [&] { return stopped; })) {
                    spdlog::error("stop took longer than {} ms; exiting now. Checkpoint and rules state are "
                                  "written before hooks are waited for; the hooks of an incident that did not "
                                  "finish run again from its record at the next start",
                                  bound_ms);
                    std::_Exit(kExitOk);
                }
                return;
            }
            if (sig == SIGHUP) {
                std::string errors;
                prepareReload("SIGHUP", errors);
            }
        }
    });

    const auto statusLine = [&](const rollguard::agent::Config& c) {
        return "STATUS=running: " + std::to_string(c.sources.size() + c.scrapes.size()) + " source(s), " +
               std::to_string(c.rules.size()) + " rule(s)" +
               (listening.empty() ? std::string() : ", listening on " + listening) +
               (c.agent.dry_run ? ", DRY-RUN" : "");
    };
    auto daemon = agent.current();
    spdlog::info("rollguard {} started with {} ({} rule(s)){}", ROLLGUARD_VERSION, config_text_path,
                 daemon->config().rules.size(), daemon->config().agent.dry_run ? " in DRY-RUN mode" : "");
    daemon->start();
    const bool notified = rollguard::agent::sdNotify("READY=1\n" + statusLine(daemon->config()));
    rollguard::agent::Daemon::Heartbeat heartbeat;
    if (const auto watchdog = rollguard::agent::sdWatchdogInterval()) {
        heartbeat.beat = [] { rollguard::agent::sdNotify("WATCHDOG=1"); };
        heartbeat.every = *watchdog / 2;
        spdlog::info("systemd watchdog: {} ms; the tick loop pings every {} ms", watchdog->count() / 1000,
                     std::chrono::duration_cast<std::chrono::milliseconds>(heartbeat.every).count());
    }
    if (notified) {
        spdlog::info("told the service manager READY=1");
    }
    for (;;) {
        daemon->run(heartbeat);
        std::optional<rollguard::agent::Config> next;
        {
            std::lock_guard lock(agent.mutex);
            next = std::exchange(agent.pending, std::nullopt);
        }
        if (agent.stopping || !next) {
            break;
        }
        timespec mono{};
        ::clock_gettime(CLOCK_MONOTONIC, &mono);
        rollguard::agent::sdNotify("RELOADING=1\nMONOTONIC_USEC=" +
                                   std::to_string(static_cast<long long>(mono.tv_sec) * 1'000'000 + mono.tv_nsec / 1000));
        // The old daemon hands over positions, windows and the rules' state; rules whose
        // definition did not change go on as if nothing happened.
        auto handoff = daemon->stopForReload();
        // Before the new daemon starts, so its start-up lines already have the new level.
        reapplyLogging(daemon->config().agent, next->agent, log_level_override);
        auto fresh = std::make_shared<rollguard::agent::Daemon>(std::move(*next), clock, std::move(handoff));
        fresh->start();
        agent.replace(fresh, clock.now());
        daemon = std::move(fresh);
        spdlog::info("reloaded {}: {} source(s), {} rule(s), {} hook(s)", config_path,
                     daemon->config().sources.size() + daemon->config().scrapes.size(),
                     daemon->config().rules.size(), daemon->config().hooks.size());
        rollguard::agent::sdNotify("READY=1\n" + statusLine(daemon->config()));
        if (agent.stopping) {
            daemon->requestStop();  // a SIGTERM that arrived during the switch
        }
    }
    server.reset();
    admin_socket.reset();
    daemon->stop();
    {
        std::lock_guard lock(stopped_mutex);
        stopped = true;
    }
    stopped_cv.notify_all();
    done = true;
    signal_thread.join();
    spdlog::info("stopped");
    return kExitOk;
}

/// Writes `text` to `path` ("-": stdout); false (after a message) when it cannot.
bool writeOutput(const std::string& path, const std::string& text) {
    if (path == "-") {
        std::cout << text << std::flush;
        return true;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
        std::cerr << "rollguard replay: cannot write " << path << "\n";
        return false;
    }
    return true;
}

struct ReplayArgs {
    std::vector<std::string> files;
    std::vector<std::string> sources;
    std::string json_out;
    std::string html_out;
    std::string from;
    std::string to;
};

int runReplay(const std::string& config_path, const ReplayArgs& args) {
    auto config = load(config_path, true);
    if (!config) {
        return kExitUsage;
    }
    configureLogging("warn");

    rollguard::agent::ReplayOptions options;
    options.sources = args.sources;
    for (const auto& [text, into] : {std::pair{&args.from, &options.from}, std::pair{&args.to, &options.to}}) {
        if (text->empty()) {
            continue;
        }
        const auto ns = rollguard::agent::parseRfc3339Nanos(*text);
        if (!ns) {
            std::cerr << "rollguard replay: '" << *text
                      << "' is not an RFC 3339 time (e.g. 2026-11-23T10:00:00Z; the zone is required)\n";
            return kExitUsage;
        }
        *into = rollguard::rules::TimePoint{std::chrono::duration_cast<rollguard::rules::TimePoint::duration>(
            std::chrono::nanoseconds{*ns})};
    }
    const bool progress = ::isatty(STDERR_FILENO) == 1;
    std::size_t progress_width = 0;
    if (progress) {
        options.on_progress = [&progress_width](const rollguard::agent::ReplayProgress& p) {
            const std::string line = rollguard::agent::formatReplayProgress(p);
            progress_width = std::max(progress_width, line.size());
            std::fprintf(stderr, "\r%-*s", static_cast<int>(progress_width), line.c_str());
            std::fflush(stderr);
        };
    }
    const auto result = rollguard::agent::replayFiles(*config, args.files, options);
    if (progress_width > 0) {
        std::fprintf(stderr, "\r%*s\r", static_cast<int>(progress_width), "");
    }
    for (const auto& e : result.usage_errors) {
        std::cerr << "rollguard replay: " << e << "\n";
    }
    for (const auto& e : result.file_errors) {
        std::cerr << "rollguard replay: cannot read " << e << "\n";
    }
    if (!result.usage_errors.empty()) {
        return kExitUsage;
    }
    if (!result.file_errors.empty()) {
        return kExitRuntime;
    }

    if (args.json_out != "-" && args.html_out != "-") {
        std::cout << rollguard::agent::renderReplayText(result) << std::flush;
    }
    if (!args.json_out.empty() && !writeOutput(args.json_out, rollguard::agent::renderReplayJson(result))) {
        return kExitRuntime;
    }
    if (!args.html_out.empty() &&
        !writeOutput(args.html_out, rollguard::agent::renderTimelineHtml(result.timeline))) {
        return kExitRuntime;
    }
    for (const auto& s : result.sources) {
        if (s.read_errors > 0) {
            return kExitRuntime;
        }
    }
    return kExitOk;
}

/// `rollguard test`: runs every test case of every file; prints one line per case and
/// a readable paragraph per unmet expectation. 0: all passed; 1: a test failed; 2: a
/// file (or the config it names) does not load.
int runRuleTestFiles(const std::vector<std::string>& files) {
    std::size_t passed = 0;
    std::size_t failed = 0;
    bool load_errors = false;
    for (const auto& path : files) {
        const auto loaded = rollguard::agent::loadRuleTestFile(path);
        for (const auto& d : loaded.diagnostics) {
            std::cerr << d.format() << "\n";
        }
        if (!loaded.ok()) {
            std::cerr << path << ": not run: the test file does not load\n";
            load_errors = true;
            continue;
        }
        for (const auto& outcome : rollguard::agent::runRuleTests(*loaded.file)) {
            if (outcome.passed()) {
                ++passed;
                std::cout << "PASS " << path << ": " << outcome.name << "\n";
                continue;
            }
            ++failed;
            std::cout << "FAIL " << path << ": " << outcome.name << "\n";
            for (const auto& f : outcome.failures) {
                std::cout << "  " << f;
            }
        }
    }
    std::cout << passed << " passed, " << failed << " failed\n";
    if (load_errors) {
        return kExitUsage;
    }
    return failed == 0 ? kExitOk : kExitRuntime;
}

}  // namespace

int main(int argc, char** argv) {
    // glibc's defaults hand every scrape's parse buffers back to the kernel and fault
    // them in again on the next scrape: with fixed thresholds bench_scrape_targets
    // (100 targets every second) uses about 0.07 cores instead of 0.11, the difference
    // being page faults. Fixed thresholds also keep the heap from growing for big blocks.
    ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
    ::mallopt(M_TRIM_THRESHOLD, 8 << 20);
    CLI::App app{"rollguard: sidecar metrics agent and auto-rollback watchdog.\n"
                 "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.",
                 "rollguard"};
    app.set_version_flag("--version", std::string("rollguard ") + ROLLGUARD_VERSION);
    app.require_subcommand(1);

    std::string config_path;
    bool dry_run = false;
    std::string log_level;
    double stop_timeout_seconds = 20.0;

    auto* run = app.add_subcommand("run", "Run the agent: follow sources, evaluate rules, run hooks.");
    run->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
    run->add_flag("--dry-run", dry_run, "Evaluate and log, but only log the hooks that would run");
    run->add_option("--log-level", log_level, "Override [agent] log_level")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
    run->add_option("--stop-timeout", stop_timeout_seconds,
                    "Seconds a stop (SIGTERM/SIGINT) may take before the agent exits anyway; keep it below "
                    "the unit's TimeoutStopSec (default 20)")
        ->check(CLI::Range(0.1, 3600.0));
    double time_scale = 1.0;
    run->add_option("--time-scale", time_scale,
                    "For tests and rehearsals only: divide the config's rule windows, for/delay/learn times, "
                    "rollout holds and cooldown, and scrape intervals by this factor (60: 5m plays in 5s)")
        ->check(CLI::Range(1.0, 100000.0));

    auto* check = app.add_subcommand("check", "Validate a configuration; print file:line:col for every error.");
    check->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
    bool check_preflight = false;
    check->add_flag("--preflight", check_preflight,
                    "Also check that every hook could run now, without running it: env/flag files and their "
                    "directories writable (owner and mode kept), scripts present and executable by their user, "
                    "secret files readable and chmod 600, URLs well formed and their hosts resolvable");
    check->footer("With --preflight each problem is printed as 'file:line:col: hook NAME: problem', then a summary.\n"
                  "Nothing is written, posted or run. The agent runs the same preflight at start, on reload and\n"
                  "every [agent] preflight_interval (see /readyz, /api/v1/status, rollguard_hook_ready).\n"
                  "Exit codes: 0 valid (and with --preflight every hook ready), 1 a hook is not ready,\n"
                  "2 bad usage or bad config.");

    auto* replay = app.add_subcommand(
        "replay", "Read log files through the sources' parsing and store; print per-source figures and the rule timeline.");
    replay->footer(
        "Per source: lines, bad lines by reason, events, errors, error ratio, p50/p90/p99/p99.9/max, lines/s.\n"
        "Then the rule timeline: every rule evaluated at every tick of the lines' own `timestamp`, as the\n"
        "daemon would have (hooks are never run; the timeline shows which would have).\n"
        "Every LOG goes through every [[source]] unless --source picks some; LOGs replace the sources' paths.\n"
        "Exit codes: 0 ok, 1 a LOG cannot be read, 2 bad usage or bad config.");
    ReplayArgs replay_args;
    replay->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
    replay->add_option("--json", replay_args.json_out,
                       "Also write the figures and the rule timeline as JSON to this file ('-': stdout, no text)");
    replay->add_option("--html", replay_args.html_out,
                       "Also write the rule timeline as one self-contained HTML page (charts) to this file");
    replay->add_option("--from", replay_args.from,
                       "Timeline from this RFC 3339 time (earlier lines still warm the windows)");
    replay->add_option("--to", replay_args.to, "Timeline up to this RFC 3339 time (reading stops after it)");
    replay->add_option("--source", replay_args.sources, "Replay through this source only (repeatable)")
        ->allow_extra_args(false);
    replay->add_option("LOG", replay_args.files, "JSON-lines log files (they replace the sources' paths)")->required();

    auto* test = app.add_subcommand(
        "test", "Run rule unit tests: generated or literal log input at given times, expected alerts at given times.");
    test->footer(
        "A test file names the config under test and holds [[test]] cases with [[test.input]] and\n"
        "[[test.expect]] tables; see docs/rule-tests.md. Hooks are never run, only recorded.\n"
        "Exit codes: 0 all passed, 1 a test failed, 2 a test file or its config does not load.");
    std::vector<std::string> test_files;
    test->add_option("FILE", test_files, "Rule test files (TOML)")->required()->check(CLI::ExistingFile);

    auto* rollback = app.add_subcommand(
        "rollback", "Run the rollback hooks by hand, through the running daemon when there is one.");
    rollback->footer(
        "Runs the hooks of every critical rule (each once, in config order), or of --rule, as a manual\n"
        "incident with its own record. With a daemon running on the same state_dir the request goes\n"
        "through its socket <state_dir>/admin.sock (no token; run as the agent's user or root);\n"
        "otherwise the hooks run here.\n"
        "Exit codes: 0 every hook succeeded, 1 a hook failed or the daemon could not be reached,\n"
        "2 bad usage, bad config, or nothing to run.");
    rollguard::cli::RollbackArgs rollback_args;
    rollback->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
    rollback->add_option("--reason", rollback_args.reason, "Why (recorded, and given to hooks)");
    rollback->add_option("--rule", rollback_args.rule, "Run only this rule's hooks");
    rollback->add_option("--wait", rollback_args.wait_seconds,
                         "Seconds to follow a daemon's rollback to its end (default 60)");

    auto* rearm = app.add_subcommand("rearm", "Clear the rollback latches after a fix, so rules roll back again.");
    rearm->footer("Through the running daemon's socket <state_dir>/admin.sock when there is one, else in\n"
                  "<state_dir>/rules.state.\n"
                  "Exit codes: 0 ok, 1 failed, 2 bad usage or config.");
    rearm->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();

    auto* incidents = app.add_subcommand("incidents", "List the incident records (rollbacks), or show one.");
    incidents->footer("Records live in <state_dir>/incidents/ (agent.max_incidents are kept).\n"
                      "Exit codes: 0 ok, 1 no such incident, 2 bad usage or config.");
    std::string incident_id;
    bool incidents_json = false;
    incidents->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
    incidents->add_option("ID", incident_id, "An incident id (or a unique prefix) to show whole");
    incidents->add_flag("--json", incidents_json, "JSON instead of text");

    auto* rollout = app.add_subcommand(
        "rollout", "Show or steer the progressive rollout ([rollout]): status, pause, resume, promote, abort.");
    rollout->footer(
        "status: the running agent's rollout (GET /api/v1/rollout), or with no agent running the state it\n"
        "saved in <state_dir>/rollout.json. pause: no promotion and no hold accrued (rollbacks still happen);\n"
        "resume: undo pause, or start a new attempt after a failed or aborted rollout; promote: the next\n"
        "stage now (satisfies a manual gate); abort: to 0% (rollback hooks run), until resume.\n"
        "The commands go through the running agent's socket <state_dir>/admin.sock (no token; without a\n"
        "state_dir, over agent.listen with the token of agent.admin_token_file).\n"
        "Exit codes: 0 done, 1 refused by the rollout (the reason is printed), no agent running or not\n"
        "reachable, 2 bad usage, bad config, or no [rollout] section.");
    rollguard::cli::RolloutArgs rollout_args;
    rollout->add_option("ACTION", rollout_args.action, "status | pause | resume | promote | abort")
        ->required()
        ->check(CLI::IsMember({"status", "pause", "resume", "promote", "abort"}));
    rollout->add_option("-c,--config", config_path, "Configuration file (TOML)")->required();
    rollout->add_option("--reason", rollout_args.reason, "Why (recorded in the rollout's history)");
    rollout->add_flag("--json", rollout_args.json, "JSON instead of text");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? kExitOk : kExitUsage;
    }

    try {
        if (*check) {
            const auto config = load(config_path, false);
            if (!config) {
                return kExitUsage;
            }
            return check_preflight ? runPreflightCheck(*config) : kExitOk;
        }
        if (*test) {
            return runRuleTestFiles(test_files);
        }
        if (*replay) {
            return runReplay(config_path, replay_args);
        }
        if (*rollback || *rearm || *incidents || *rollout) {
            auto config = load(config_path, true);
            if (!config) {
                return kExitUsage;
            }
            configureLogging(config->agent.log_level == "info" ? "warn" : config->agent.log_level);
            if (*rollback) {
                return rollguard::cli::runRollback(*config, rollback_args);
            }
            if (*rearm) {
                return rollguard::cli::runRearm(*config);
            }
            if (*rollout) {
                return rollguard::cli::runRollout(*config, rollout_args);
            }
            return rollguard::cli::runIncidents(*config, incident_id, incidents_json);
        }
        return runAgent(config_path, dry_run, log_level,
                        std::chrono::milliseconds{static_cast<long long>(stop_timeout_seconds * 1000.0)}, time_scale);
    } catch (const std::exception& e) {
        std::cerr << "rollguard: " << e.what() << "\n";
        return kExitRuntime;
    }
}
