// Fuzz target: the `json` scrape sources' value extraction (JsonBody,
// agent/src/scrape/json_body.cpp): the whole-document check and numbers by JSON Pointer.
// Input: `POINTER\nBODY` (no '\n': the whole input is the body); the pointer read from
// the input is tried along with a fixed set ("", "/a", "/a/0", "/a/b/c",
// "/latency/p95_ms", "/m~1n", "/~0", "/-", "/0"). Checks: no crash (ASan/UBSan); a body
// that does not load yields no number and an error; every lookup returns a number or a
// non-empty error, the same on a second call; and, for a body that loads, wrapping it as
// `{"w": BODY}` loads too and "/w" + pointer reads what the pointer read in the body.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "rollguard/agent/json_body.h"

using rollguard::agent::JsonBody;
using rollguard::fuzz::check;

namespace {

bool same(const std::optional<double>& a, const std::optional<double>& b) {
    if (a.has_value() != b.has_value()) {
        return false;
    }
    return !a || *a == *b || (std::isnan(*a) && std::isnan(*b));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static JsonBody body;
    static JsonBody wrapped;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> pointers{"", "/a", "/a/0", "/a/b/c", "/latency/p95_ms", "/m~1n", "/~0", "/-", "/0"};
    std::string_view text = input;
    if (const std::size_t nl = input.find('\n'); nl != std::string_view::npos) {
        pointers.emplace_back(input.substr(0, nl));
        text = input.substr(nl + 1);
    }
    const bool loaded = body.load(text);
    const bool wrapped_loaded = loaded && wrapped.load("{\"w\": " + std::string(text) + "}");
    check(!loaded || wrapped_loaded, "a body that loads does not load inside an object");
    for (const auto& pointer : pointers) {
        std::string error;
        const auto v = body.numberAt(pointer, error);
        check(v.has_value() || !error.empty(), "no number and no error");
        check(loaded || !v.has_value(), "a number from a body that did not load");
        std::string error2;
        check(same(v, body.numberAt(pointer, error2)), "a second lookup differs");
        if (loaded && !pointer.empty() && pointer[0] == '/') {
            std::string werror;
            check(same(v, wrapped.numberAt("/w" + pointer, werror)), "the wrapped body reads another value");
        }
    }
    return 0;
}
