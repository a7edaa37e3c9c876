// rollguard-loggen: the demo workload. Appends realistic JSON access-log lines to a file
// at a steady rate: healthy first, then degraded (latency x4 and ~8% 5xx), as a bad
// canary would. Used by the demo and by end-to-end tests.
// With --no-sleep it writes as fast as it can on a virtual clock (timestamps still step
// by 1/rate), and --count N stops after N lines: how bench/bench_vs_mtail.sh makes a large
// realistic file. --wide adds client address and user agent (lines of ~230-250 bytes).

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "rollguard/agent/json_writer.h"
#include "rollguard/agent/log_source.h"

int main(int argc, char** argv) {
    CLI::App app{"Append realistic JSON access-log lines: healthy, then degraded (latency x4, ~8% 5xx)."};
    std::string out;
    double rate = 200;
    double healthy_seconds = 5;
    double degraded_seconds = 20;
    double latency_factor = 4.0;
    double error_ratio = 0.08;
    unsigned seed = 42;
    std::string variant = "canary";
    std::uint64_t count = 0;
    bool no_sleep = false;
    bool wide = false;
    std::string start_text;
    app.add_option("-o,--out", out, "Log file to append to")->required();
    app.add_option("--rate", rate, "Lines per second")->check(CLI::Range(1.0, 1e6));
    app.add_option("--healthy", healthy_seconds, "Seconds of healthy traffic")->check(CLI::NonNegativeNumber);
    app.add_option("--degraded", degraded_seconds, "Seconds of degraded traffic")->check(CLI::NonNegativeNumber);
    app.add_option("--latency-factor", latency_factor, "Latency multiplier when degraded");
    app.add_option("--error-ratio", error_ratio, "Share of 5xx responses when degraded")->check(CLI::Range(0.0, 1.0));
    app.add_option("--seed", seed, "Random seed");
    app.add_option("--variant", variant, "Value of the 'variant' field");
    app.add_option("--count", count, "Stop after this many lines (the phases go on: degraded after --healthy)");
    app.add_flag("--no-sleep", no_sleep, "Do not pace: write as fast as possible, timestamps on a virtual clock");
    app.add_flag("--wide", wide, "Add remote_addr and user_agent fields (typical 200-250 byte lines)");
    app.add_option("--start", start_text,
                   "With --no-sleep: the virtual clock's start (RFC 3339), for reproducible logs; default now");
    CLI11_PARSE(app, argc, argv);
    std::optional<std::int64_t> start_ns;
    if (!start_text.empty()) {
        start_ns = rollguard::agent::parseRfc3339Nanos(start_text);
        if (!start_ns || !no_sleep) {
            std::cerr << "rollguard-loggen: --start needs --no-sleep and an RFC 3339 time, e.g. 2026-01-01T00:00:00Z\n";
            return 2;
        }
    }

    std::ofstream file(out, std::ios::app | std::ios::binary);
    if (!file) {
        std::cerr << "rollguard-loggen: cannot open " << out << "\n";
        return 1;
    }

    std::mt19937_64 rng(seed);
    std::lognormal_distribution<double> latency_ms(std::log(25.0), 0.45);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const char* routes[] = {"/api/orders", "/api/orders/{id}", "/api/users/{id}", "/api/search", "/healthz"};
    const char* methods[] = {"GET", "GET", "GET", "POST", "PUT"};
    const char* agents[] = {"Mozilla/5.0 (X11; Linux x86_64)", "okhttp/4.12.0", "curl/8.5.0",
                            "python-requests/2.31.0", "Go-http-client/2.0"};

    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto wall_start =
        start_ns ? std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       std::chrono::nanoseconds{*start_ns}))
                 : std::chrono::system_clock::now();
    const auto period = std::chrono::duration<double>(1.0 / rate);
    const double total = healthy_seconds + degraded_seconds;
    std::uint64_t n = 0;
    std::uint64_t degraded_lines = 0;
    bool announced = false;
    for (;;) {
        const auto due = start + std::chrono::duration_cast<clock::duration>(period * static_cast<double>(n));
        const double elapsed = std::chrono::duration<double>(due - start).count();
        if (count > 0 ? n >= count : elapsed >= total) {
            break;
        }
        if (!no_sleep) {
            std::this_thread::sleep_until(due);
        }
        const bool degraded = elapsed >= healthy_seconds;
        if (degraded && !announced) {
            std::cerr << "rollguard-loggen: " << n << " healthy lines written; now degraded (latency x"
                      << latency_factor << ", " << error_ratio * 100 << "% 5xx)\n";
            announced = true;
        }
        double ms = latency_ms(rng);
        int status = unit(rng) < 0.003 ? 404 : 200;
        if (degraded) {
            ms *= latency_factor;
            if (unit(rng) < error_ratio) {
                status = unit(rng) < 0.7 ? 500 : 503;
            }
            ++degraded_lines;
        }
        const std::size_t r = static_cast<std::size_t>(unit(rng) * 5) % 5;
        char trace[17];
        std::snprintf(trace, sizeof(trace), "%016llx", static_cast<unsigned long long>(rng()));

        rollguard::agent::JsonWriter w;
        w.beginObject();
        const auto ts = no_sleep ? wall_start + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                                    std::chrono::duration<double>(elapsed))
                                 : std::chrono::system_clock::now();
        w.key("ts").value(rollguard::agent::formatRfc3339(ts));
        w.key("level").value(status >= 500 ? "error" : "info");
        w.key("method").value(methods[r]);
        w.key("route").value(routes[r]);
        w.key("status").value(status);
        w.key("duration_ms").value(std::round(ms * 1000.0) / 1000.0);
        w.key("bytes").value(static_cast<std::int64_t>(200 + unit(rng) * 4000));
        w.key("variant").value(variant);
        w.key("trace_id").value(trace);
        if (wide) {
            char addr[32];
            std::snprintf(addr, sizeof(addr), "10.%u.%u.%u", static_cast<unsigned>(rng() % 256),
                          static_cast<unsigned>(rng() % 256), static_cast<unsigned>(rng() % 254 + 1));
            w.key("remote_addr").value(addr);
            w.key("user_agent").value(agents[rng() % 5]);
        }
        w.endObject();
        file << w.str() << '\n';
        if (!no_sleep) {
            file.flush();
        }
        ++n;
    }
    std::cerr << "rollguard-loggen: wrote " << n << " lines (" << degraded_lines << " degraded) to " << out << "\n";
    return 0;
}
