// Fuzz target: the =~ / !~ label matchers (rules/src/selection.cpp, RE2). Input: the
// pattern up to the first '\n', the label value after it. Checks: LabelMatcher::make
// either compiles the pattern or refuses it with RE2's message (never both, never a
// crash or an exception); =~ and !~ of one pattern give opposite answers on every value.
// regressions/label_matcher/ holds `(a+)+$` against "aaa...!", exponential for a
// backtracking engine (std::regex): with -timeout=10 it would hang there; RE2 finishes
// at once.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "rollguard/rules/selection.h"

using rollguard::fuzz::check;
using rollguard::rules::LabelMatcher;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto newline = input.find('\n');
    const std::string pattern(input.substr(0, newline));
    const std::string_view value = newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);

    std::string error;
    const auto re = LabelMatcher::make("l", LabelMatcher::Op::Regex, pattern, error);
    if (re == nullptr) {
        check(!error.empty(), "a refused pattern without RE2's message");
        return 0;
    }
    check(error.empty(), "a compiled pattern with an error message");
    std::string not_error;
    const auto not_re = LabelMatcher::make("l", LabelMatcher::Op::NotRegex, pattern, not_error);
    check(not_re != nullptr, "=~ compiles a pattern !~ refuses");
    check(re->matches(value) != not_re->matches(value), "=~ and !~ agree on a value");
    return 0;
}
