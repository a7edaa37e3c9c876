// rollguard-prochog: a process with a known footprint for the process-metrics tests
// (tests/unit/test_proc_metrics.cpp). It allocates and touches RSS_MB megabytes, opens
// FDS extra descriptors on /dev/null, starts THREADS idle threads and, with --busy,
// spins its main thread; then it prints "ready" on stdout (flushed) and lives until
// killed. With --grow-mb N, each SIGUSR1 allocates and touches N more megabytes and
// then prints "grown <total MB>" (a memory leak on demand, for the rollout-guide tests).
// Its comm is the kernel's 15-byte truncation "rollguard-proch", which the tests rely
// on to check name matching.
//
// Usage: rollguard-prochog [--rss-mb N] [--fds N] [--threads N] [--busy] [--grow-mb N]
// Exit status: 2 on bad arguments or when the footprint cannot be set up.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

// Keeps the touched memory reachable, so the allocation cannot be optimised away.
char* volatile g_memory = nullptr;
// The same for the blocks added by SIGUSR1 (--grow-mb); only the grower thread touches it.
std::vector<char*> g_grown;

/// Allocates `mb` megabytes and faults every page in with non-zero bytes (private RSS).
char* touchMegabytes(unsigned long mb) {
    const std::size_t bytes = mb * 1024UL * 1024UL;
    auto* memory = static_cast<char*>(std::malloc(bytes));
    if (memory != nullptr) {
        std::memset(memory, 0x5a, bytes);
    }
    return memory;
}

bool parseCount(const char* text, unsigned long& out) {
    char* end = nullptr;
    out = std::strtoul(text, &end, 10);
    return end != text && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
    unsigned long rss_mb = 0;
    unsigned long fds = 0;
    unsigned long threads = 0;
    bool busy = false;
    unsigned long grow_mb = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--busy") {
            busy = true;
        } else if (arg == "--rss-mb" && has_value && parseCount(argv[i + 1], rss_mb)) {
            ++i;
        } else if (arg == "--fds" && has_value && parseCount(argv[i + 1], fds)) {
            ++i;
        } else if (arg == "--threads" && has_value && parseCount(argv[i + 1], threads)) {
            ++i;
        } else if (arg == "--grow-mb" && has_value && parseCount(argv[i + 1], grow_mb)) {
            ++i;
        } else {
            std::fprintf(stderr,
                         "usage: rollguard-prochog [--rss-mb N] [--fds N] [--threads N] [--busy] [--grow-mb N]\n");
            return 2;
        }
    }

    // SIGUSR1 is blocked before any thread starts, so only the grower's sigwait takes it.
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (grow_mb > 0) {
        pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
    }
    if (rss_mb > 0) {
        // Non-zero bytes: every page is really faulted in and private.
        g_memory = touchMegabytes(rss_mb);
        if (g_memory == nullptr) {
            std::fprintf(stderr, "cannot allocate %lu MB\n", rss_mb);
            return 2;
        }
    }
    for (unsigned long i = 0; i < fds; ++i) {
        if (::open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) {
            std::perror("open /dev/null");
            return 2;
        }
    }
    std::mutex mutex;
    std::condition_variable never;
    std::vector<std::thread> idle;
    for (unsigned long i = 0; i < threads; ++i) {
        idle.emplace_back([&] {
            std::unique_lock lock(mutex);
            never.wait(lock, [] { return false; });
        });
    }

    std::thread grower;
    if (grow_mb > 0) {
        grower = std::thread([&usr1, grow_mb, rss_mb] {
            unsigned long total = rss_mb;
            for (;;) {
                int sig = 0;
                if (sigwait(&usr1, &sig) != 0) {
                    continue;
                }
                char* block = touchMegabytes(grow_mb);
                if (block == nullptr) {
                    std::printf("cannot grow\n");
                } else {
                    g_grown.push_back(block);
                    total += grow_mb;
                    std::printf("grown %lu\n", total);
                }
                std::fflush(stdout);
            }
        });
    }

    std::printf("ready\n");
    std::fflush(stdout);
    if (busy) {
        volatile unsigned long spin = 0;
        for (;;) {
            spin = spin + 1;
        }
    }
    for (;;) {
        ::pause();
    }
}
