// What json_file and toml_file hooks share: JSON Pointers and how values read in messages.
#include <cmath>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_writer.h"

namespace rollguard::agent {

std::optional<std::vector<std::string>> parseJsonPointer(std::string_view pointer, std::string* why) {
    auto fail = [why](std::string text) -> std::optional<std::vector<std::string>> {
        if (why != nullptr) {
            *why = std::move(text);
        }
        return std::nullopt;
    };
    if (pointer.empty()) {
        return fail("the empty pointer would replace the whole document; name a key, e.g. \"/flags/enabled\"");
    }
    if (pointer[0] != '/') {
        return fail("a JSON Pointer starts with '/', e.g. \"/" + std::string(pointer) + "\"");
    }
    std::vector<std::string> segments;
    std::string current;
    for (std::size_t i = 1; i <= pointer.size(); ++i) {
        if (i == pointer.size() || pointer[i] == '/') {
            segments.push_back(std::move(current));
            current.clear();
            continue;
        }
        if (pointer[i] != '~') {
            current += pointer[i];
            continue;
        }
        if (i + 1 < pointer.size() && (pointer[i + 1] == '0' || pointer[i + 1] == '1')) {
            current += pointer[i + 1] == '0' ? '~' : '/';
            ++i;
            continue;
        }
        return fail("'~' must be followed by 0 (for '~') or 1 (for '/')");
    }
    return segments;
}

std::string flagValueText(const FlagValue& value) {
    return std::visit(
        [](const auto& v) -> std::string {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, bool>) {
                return v ? "true" : "false";
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                return std::to_string(v);
            } else if constexpr (std::is_same_v<T, double>) {
                return detail::floatText(v);
            } else {
                std::string out;
                appendJsonString(out, v);
                return out;
            }
        },
        value);
}

namespace detail {

std::string floatText(double value) {
    if (std::isnan(value)) {
        return "nan";
    }
    if (std::isinf(value)) {
        return value > 0 ? "inf" : "-inf";
    }
    std::string text = formatDouble(value, true);
    if (text.find_first_not_of("-0123456789") == std::string::npos) {
        text += ".0";  // stays a float when read back
    }
    return text;
}

std::string describeFlagChange(const std::vector<FlagSetting>& set, const std::vector<std::string>& unset) {
    std::string msg;
    if (!set.empty()) {
        msg += "set ";
        for (std::size_t i = 0; i < set.size(); ++i) {
            msg += (i ? ", " : "") + set[i].pointer + "=" + flagValueText(set[i].value);
        }
    }
    if (!unset.empty()) {
        msg += msg.empty() ? "unset " : "; unset ";
        for (std::size_t i = 0; i < unset.size(); ++i) {
            msg += (i ? ", " : "") + unset[i];
        }
    }
    return msg;
}

}  // namespace detail
}  // namespace rollguard::agent
