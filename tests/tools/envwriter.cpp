// rollguard-envwriter: rewrites an env file N times through applyEnvFile (the env_file
// hook's code path), setting VALUE=<FIRST + i> for i = 0..N-1 and
// PAD=<envPadding(PAD_BYTES)>, with a backup. The crash test (tests/integration/test_env_file_crash.cpp) kills it with
// SIGKILL at random moments and checks the file is always a complete version.
//
// Usage: rollguard-envwriter PATH N [PAD_BYTES [FIRST]]   (defaults 40000 and 0)
// Prints "ready" on stdout (flushed; nothing else goes there) just before the first
// rewrite, so that a test can time its kill from there rather than from process start-up.
// Exit status: 0 after N rewrites, 1 when a rewrite fails (its message on stderr),
// 2 on bad arguments.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rollguard/agent/hooks.h"

namespace {

// The padding value: bare-safe characters, so it is written unquoted. The test builds the
// same text.
std::string envPadding(std::size_t bytes) {
    std::string pad(bytes, 'a');
    for (std::size_t i = 0; i < bytes; ++i) {
        pad[i] = static_cast<char>('a' + i % 26);
    }
    return pad;
}

bool parseCount(const char* text, unsigned long long& out) {
    char* end = nullptr;
    out = std::strtoull(text, &end, 10);
    return end != text && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
    unsigned long long count = 0;
    unsigned long long pad_bytes = 40000;
    unsigned long long first = 0;
    if (argc < 3 || argc > 5 || !parseCount(argv[2], count) || (argc >= 4 && !parseCount(argv[3], pad_bytes)) ||
        (argc == 5 && !parseCount(argv[4], first))) {
        std::fprintf(stderr, "usage: rollguard-envwriter PATH N [PAD_BYTES [FIRST]]\n");
        return 2;
    }
    rollguard::agent::HookConfig config;
    config.name = "envwriter";
    config.type = rollguard::agent::HookType::EnvFile;
    config.path = argv[1];
    config.backup = true;
    config.timeout = std::chrono::seconds{10};
    const std::string pad = envPadding(static_cast<std::size_t>(pad_bytes));
    std::printf("ready\n");
    std::fflush(stdout);
    for (unsigned long long i = 0; i < count; ++i) {
        config.set = {{"VALUE", std::to_string(first + i)}, {"PAD", pad}};
        const auto result = rollguard::agent::applyEnvFile(config);
        if (!result.ok) {
            std::fprintf(stderr, "rewrite %llu failed: %s\n", i, result.message.c_str());
            return 1;
        }
    }
    // On stderr: a test may have closed the pipe it read "ready" from.
    std::fprintf(stderr, "%llu rewrites\n", count);
    return 0;
}
