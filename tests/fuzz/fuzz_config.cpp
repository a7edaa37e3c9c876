// Fuzz target: the config loader, parseConfig(text, path) (agent/src/config/
// config_loader.cpp): TOML text -> checked Config. Input: the config text. Checks: no
// crash, no exception out of it (ASan/UBSan, libFuzzer's uncaught-exception abort); a
// refusal carries at least one error and every error has a line and a column >= 1; an
// accepted config has no error and its path is the given one.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "rollguard/agent/config.h"

using rollguard::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::string path = "/fuzz/rollguard.toml";
    const auto r = rollguard::agent::parseConfig(text, path);
    bool has_error = false;
    for (const auto& d : r.diagnostics) {
        if (d.level == rollguard::rules::Diagnostic::Level::Error) {
            has_error = true;
            check(d.where.line >= 1 && d.where.column >= 1, "an error diagnostic without line:col");
            check(!d.message.empty(), "an error diagnostic without a message");
        }
    }
    check(r.ok() != has_error, "accepted with an error, or refused without one");
    if (r.ok()) {
        check(r.config->path == path, "the config does not carry its path");
    }
    return 0;
}
