// toml_file hook: sets values by JSON Pointer in a TOML flag file (parsed and written by
// toml++, linked from its shared library like the config loader).
#include <toml++/toml.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

namespace rollguard::agent {
namespace {

const char* nodeName(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::none:
            return "nothing";
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
            return "a date";
        case toml::node_type::time:
            return "a time";
        case toml::node_type::date_time:
            return "a date-time";
    }
    return "a value";
}

bool equalsWanted(const toml::node& n, const FlagValue& wanted) {
    return std::visit(
        [&n](const auto& w) {
            using T = std::decay_t<decltype(w)>;
            if constexpr (std::is_same_v<T, bool>) {
                const auto* v = n.as_boolean();
                return v != nullptr && v->get() == w;
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                const auto* v = n.as_integer();
                return v != nullptr && v->get() == w;
            } else if constexpr (std::is_same_v<T, double>) {
                const auto* v = n.as_floating_point();
                return v != nullptr && (v->get() == w || (std::isnan(v->get()) && std::isnan(w)));
            } else {
                const auto* v = n.as_string();
                return v != nullptr && v->get() == w;
            }
        },
        wanted);
}

/// Calls `f` with the toml++ value for `wanted` (bool, int64_t, double or std::string).
template <typename F>
void withValue(const FlagValue& wanted, F&& f) {
    std::visit([&f](const auto& w) { f(w); }, wanted);
}

/// The element of `array` that segments[n] names, or an error text.
std::variant<toml::node*, std::string> arrayElement(toml::array& array, const std::vector<std::string>& segments,
                                                    std::size_t n) {
    const std::string& segment = segments[n];
    if (segment == "-") {
        return std::string("'-' (append) is not supported: every run would append again");
    }
    const auto index = detail::pointerArrayIndex(segment);
    if (!index) {
        return detail::pointerPlaceName(segments, n) + " is an array and '" + segment + "' is not an index";
    }
    if (*index >= array.size()) {
        return "index " + segment + " is out of range (" + detail::pointerPlaceName(segments, n) + " has " +
               std::to_string(array.size()) + " elements)";
    }
    return array.get(*index);
}

std::optional<std::string> setValue(toml::table& root, const std::vector<std::string>& segments,
                                    const std::string& pointer, const FlagValue& wanted, bool& changed) {
    toml::node* current = &root;
    for (std::size_t n = 0; n < segments.size(); ++n) {
        const bool last = n + 1 == segments.size();
        const std::string& segment = segments[n];
        if (auto* table = current->as_table()) {
            toml::node* next = table->get(segment);
            if (last) {
                if (next == nullptr || !equalsWanted(*next, wanted)) {
                    withValue(wanted, [&](const auto& w) { table->insert_or_assign(segment, w); });
                    changed = true;
                }
                return std::nullopt;
            }
            if (next == nullptr) {
                next = table->insert(segment, toml::table{}).first->second.as_table();
                changed = true;
            }
            current = next;
        } else if (auto* array = current->as_array()) {
            auto element = arrayElement(*array, segments, n);
            if (auto* why = std::get_if<std::string>(&element)) {
                return "cannot set " + pointer + ": " + *why;
            }
            toml::node* next = std::get<toml::node*>(element);
            if (last) {
                if (!equalsWanted(*next, wanted)) {
                    const auto index = static_cast<std::ptrdiff_t>(*detail::pointerArrayIndex(segment));
                    withValue(wanted, [&](const auto& w) { array->replace(array->cbegin() + index, w); });
                    changed = true;
                }
                return std::nullopt;
            }
            current = next;
        } else {
            return "cannot set " + pointer + ": " + detail::pointerPlaceName(segments, n) + " is " + nodeName(*current) +
                   ", not a table";
        }
    }
    return std::nullopt;
}

std::optional<std::string> unsetValue(toml::table& root, const std::vector<std::string>& segments,
                                      const std::string& pointer, bool& changed) {
    toml::node* current = &root;
    for (std::size_t n = 0; n < segments.size(); ++n) {
        const bool last = n + 1 == segments.size();
        if (auto* table = current->as_table()) {
            toml::node* next = table->get(segments[n]);
            if (next == nullptr) {
                return std::nullopt;  // already absent
            }
            if (last) {
                table->erase(segments[n]);
                changed = true;
                return std::nullopt;
            }
            current = next;
        } else if (auto* array = current->as_array()) {
            if (last) {
                return "cannot unset " + pointer +
                       ": removing array elements is not supported (a second run would remove the next one)";
            }
            const auto index = detail::pointerArrayIndex(segments[n]);
            if (!index || *index >= array->size()) {
                return std::nullopt;
            }
            current = array->get(*index);
        } else {
            return std::nullopt;  // nothing below a scalar: already absent
        }
    }
    return std::nullopt;
}

}  // namespace

FlagFileEdit rewriteTomlText(std::string_view text, const std::vector<FlagSetting>& set,
                             const std::vector<std::string>& unset, std::string_view name) {
    FlagFileEdit result;
    toml::table root;
    try {
        root = toml::parse(text, name);
    } catch (const toml::parse_error& e) {
        const auto& at = e.source().begin;
        result.error = std::string(name) + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
                       std::string(e.description());
        return result;
    }
    bool changed = false;
    for (const auto& s : set) {
        std::string why;
        const auto segments = parseJsonPointer(s.pointer, &why);
        if (!segments) {
            result.error = "invalid pointer '" + s.pointer + "': " + why;
            return result;
        }
        if (auto err = setValue(root, *segments, s.pointer, s.value, changed)) {
            result.error = std::move(*err);
            return result;
        }
    }
    for (const auto& pointer : unset) {
        std::string why;
        const auto segments = parseJsonPointer(pointer, &why);
        if (!segments) {
            result.error = "invalid pointer '" + pointer + "': " + why;
            return result;
        }
        if (auto err = unsetValue(root, *segments, pointer, changed)) {
            result.error = std::move(*err);
            return result;
        }
    }
    result.ok = true;
    result.changed = changed;
    if (!changed) {
        result.text = std::string(text);
        return result;
    }
    // Sub-tables flush left, as flag files are usually written.
    std::ostringstream out;
    out << toml::toml_formatter(root, toml::toml_formatter::default_flags & ~toml::format_flags::indentation);
    result.text = std::move(out).str();
    if (!result.text.empty() && result.text.back() != '\n') {
        result.text += '\n';
    }
    return result;
}

namespace detail {

FileEdit tomlFileEdit(const HookConfig& config) {
    FileEdit out;
    out.edit = [set = config.flag_set, unset = config.unset](std::string_view text, bool exists,
                                                             const std::string& path) {
        TextEdit edit;
        auto r = rewriteTomlText(text, set, unset, path);
        if (!r.ok) {
            edit.error = std::move(r.error);
            return edit;
        }
        edit.text = std::move(r.text);
        edit.changed = r.changed || !exists;
        return edit;
    };
    out.change = describeFlagChange(config.flag_set, config.unset);
    return out;
}

}  // namespace detail

HookResult applyTomlFile(const HookConfig& config) {
    const detail::FileEdit planned = detail::tomlFileEdit(config);
    return detail::editFileInPlace(config, planned.edit, planned.change);
}

}  // namespace rollguard::agent
