// rollguard-prochog: a process with a known footprint for the process-metrics tests
// (tests/unit/test_proc_metrics.cpp). It allocates and touches RSS_MB megabytes, opens
// FDS extra descriptors on /dev/null, starts THREADS idle threads and, with --busy,
// spins its main thread; then it prints "ready" on stdout (flushed) and lives until
// killed. Its comm is the kernel's 15-byte truncation "rollguard-proch", which the tests
// rely on to check name matching.
//
// Usage: rollguard-prochog [--rss-mb N] [--fds N] [--threads N] [--busy]
// Exit status: 2 on bad arguments or when the footprint cannot be set up.

#include <fcntl.h>
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
        } else {
            std::fprintf(stderr, "usage: rollguard-prochog [--rss-mb N] [--fds N] [--threads N] [--busy]\n");
            return 2;
        }
    }

    if (rss_mb > 0) {
        const std::size_t bytes = rss_mb * 1024UL * 1024UL;
        auto* memory = static_cast<char*>(std::malloc(bytes));
        if (memory == nullptr) {
            std::fprintf(stderr, "cannot allocate %lu MB\n", rss_mb);
            return 2;
        }
        // Non-zero bytes: every page is really faulted in and private.
        std::memset(memory, 0x5a, bytes);
        g_memory = memory;
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
