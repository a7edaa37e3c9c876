// env_file hook: edits KEY=value files in place, atomically, keeping everything else.
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"

namespace rollguard::agent {
namespace {

bool isBlank(char c) {
    return c == ' ' || c == '\t';
}

// One definition found in the text. A quoted value may run over several lines; the
// definition then covers all of them.
struct Definition {
    std::size_t begin = 0;        // first byte of the (first) line
    std::size_t value_begin = 0;  // first byte of the value text (a quote when quoted)
    std::size_t value_end = 0;    // one past the value text (past the closing quote)
    std::size_t content_end = 0;  // end of the last line, before "\r\n" / "\n"
    std::size_t end = 0;          // one past the line terminator
    std::string key;
    std::string value;  // decoded
    char quote = '\0';  // the value's quote character, '\0' when unquoted
    bool unterminated = false;  // begins with a quote that nothing closes: read as plain
};

// Finds the end of the line containing `pos`: the content end (before an optional
// '\r' and the '\n') and the position after the terminator.
std::pair<std::size_t, std::size_t> lineEnd(std::string_view text, std::size_t pos) {
    const std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {
        return {text.size(), text.size()};
    }
    std::size_t content_end = nl;
    if (content_end > pos && text[content_end - 1] == '\r') {
        --content_end;
    }
    return {content_end, nl + 1};
}

// Parses a double-quoted value starting after the opening quote. Returns the position
// of the closing quote, or npos when it is missing.
std::size_t parseDoubleQuoted(std::string_view text, std::size_t pos, std::string& out) {
    for (std::size_t i = pos; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '"') {
            return i;
        }
        if (c == '\\' && i + 1 < text.size()) {
            const char n = text[i + 1];
            switch (n) {
                case '"':
                case '\\':
                case '$':
                case '`':
                    out += n;
                    ++i;
                    continue;
                case 'n':
                    out += '\n';
                    ++i;
                    continue;
                default:
                    break;  // any other backslash is literal
            }
        }
        out += c;
    }
    return std::string_view::npos;
}

// Parses the line starting at `begin`. Returns nullopt for comments, blank lines and
// anything that is not KEY=value (those are kept verbatim).
std::optional<Definition> parseDefinition(std::string_view text, std::size_t begin) {
    auto [content_end, end] = lineEnd(text, begin);
    std::size_t i = begin;
    while (i < content_end && isBlank(text[i])) {
        ++i;
    }
    if (i >= content_end || text[i] == '#' || text[i] == ';') {
        return std::nullopt;
    }
    constexpr std::string_view kExport = "export";
    if (text.substr(i, kExport.size()) == kExport && i + kExport.size() < content_end &&
        isBlank(text[i + kExport.size()])) {
        std::size_t j = i + kExport.size();
        while (j < content_end && isBlank(text[j])) {
            ++j;
        }
        if (j < content_end && text[j] != '=') {
            i = j;
        }
    }
    const std::size_t key_begin = i;
    while (i < content_end && !isBlank(text[i]) && text[i] != '=') {
        ++i;
    }
    if (i == key_begin) {
        return std::nullopt;
    }
    Definition d;
    d.begin = begin;
    d.key = std::string(text.substr(key_begin, i - key_begin));
    while (i < content_end && isBlank(text[i])) {
        ++i;
    }
    if (i >= content_end || text[i] != '=') {
        return std::nullopt;
    }
    ++i;
    while (i < content_end && isBlank(text[i])) {
        ++i;
    }
    d.value_begin = i;

    const char q = i < content_end ? text[i] : '\0';
    if (q == '\'' || q == '"') {
        std::size_t close = std::string_view::npos;
        std::string value;
        if (q == '\'') {
            close = text.find('\'', i + 1);
            if (close != std::string_view::npos) {
                value = std::string(text.substr(i + 1, close - i - 1));
            }
        } else {
            close = parseDoubleQuoted(text, i + 1, value);
        }
        // An unterminated quote is read as a plain value rather than swallowing the
        // rest of the file.
        if (close != std::string_view::npos) {
            d.value = std::move(value);
            d.quote = q;
            d.value_end = close + 1;
            std::tie(d.content_end, d.end) = lineEnd(text, close);
            return d;
        }
    }
    d.unterminated = q == '\'' || q == '"';
    std::size_t value_end = content_end;
    while (value_end > i && isBlank(text[value_end - 1])) {
        --value_end;
    }
    d.value = std::string(text.substr(i, value_end - i));
    d.value_end = content_end;
    d.content_end = content_end;
    d.end = end;
    return d;
}

bool needsQuoting(std::string_view value) {
    for (const char c : value) {
        const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                           std::string_view("_./:,@%+-").find(c) != std::string_view::npos;
        if (!plain) {
            return true;
        }
    }
    return false;
}

/// The value as written in the file. `quote` is the quoting of the value it replaces:
/// kept, because text after a quoted value (a comment) would become part of an unquoted
/// one; a single-quoted value that cannot stay single-quoted (it contains ') becomes
/// double-quoted.
std::string encodeValue(std::string_view value, char quote = '\0') {
    if (quote == '\'' && value.find('\'') == std::string_view::npos) {
        return "'" + std::string(value) + "'";
    }
    if (quote == '\0' && !needsQuoting(value)) {
        return std::string(value);
    }
    std::string out = "\"";
    for (const char c : value) {
        switch (c) {
            case '"':
            case '\\':
            case '$':
            case '`':
                out += '\\';
                out += c;
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                out += c;
        }
    }
    out += '"';
    return out;
}

bool isValidKey(std::string_view key) {
    if (key.empty() || (key[0] >= '0' && key[0] <= '9')) {
        return false;
    }
    for (const char c : key) {
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

std::string describeChange(const HookConfig& config) {
    std::string msg;
    if (!config.set.empty()) {
        msg += "set ";
        for (std::size_t i = 0; i < config.set.size(); ++i) {
            msg += (i ? ", " : "") + config.set[i].first + "=" + config.set[i].second;
        }
    }
    if (!config.unset.empty()) {
        msg += msg.empty() ? "unset " : "; unset ";
        for (std::size_t i = 0; i < config.unset.size(); ++i) {
            msg += (i ? ", " : "") + config.unset[i];
        }
    }
    return msg;
}

}  // namespace

std::string rewriteEnvText(std::string_view text, const std::vector<std::pair<std::string, std::string>>& set,
                           const std::vector<std::string>& unset, bool* changed) {
    // Later entries for the same key win; first-seen order decides where appends go.
    std::vector<std::pair<std::string, std::string>> wanted;
    for (const auto& [key, value] : set) {
        bool replaced = false;
        for (auto& w : wanted) {
            if (w.first == key) {
                w.second = value;
                replaced = true;
            }
        }
        if (!replaced) {
            wanted.emplace_back(key, value);
        }
    }
    auto isUnset = [&](std::string_view key) {
        for (const auto& u : unset) {
            if (u == key) {
                return true;
            }
        }
        return false;
    };
    std::vector<bool> present(wanted.size(), false);

    std::string out;
    out.reserve(text.size() + 64);
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto def = parseDefinition(text, pos);
        if (!def) {
            const std::size_t end = lineEnd(text, pos).second;
            out.append(text.substr(pos, end - pos));
            pos = end;
            continue;
        }
        if (isUnset(def->key)) {
            pos = def->end;
            continue;
        }
        bool handled = false;
        for (std::size_t k = 0; k < wanted.size(); ++k) {
            if (wanted[k].first != def->key) {
                continue;
            }
            present[k] = true;
            if (def->value == wanted[k].second) {
                break;  // already right: keep the line exactly as written
            }
            out.append(text.substr(def->begin, def->value_begin - def->begin));
            out += encodeValue(wanted[k].second, def->quote);
            out.append(text.substr(def->value_end, def->content_end - def->value_end));
            out.append(text.substr(def->content_end, def->end - def->content_end));
            handled = true;
            break;
        }
        if (!handled) {
            out.append(text.substr(def->begin, def->end - def->begin));
        }
        pos = def->end;
    }
    for (std::size_t k = 0; k < wanted.size(); ++k) {
        if (present[k] || isUnset(wanted[k].first)) {
            continue;
        }
        if (!out.empty() && out.back() != '\n') {
            out += '\n';
        }
        out += wanted[k].first + "=" + encodeValue(wanted[k].second) + "\n";
    }
    if (changed != nullptr) {
        *changed = out != text;
    }
    return out;
}

std::optional<std::size_t> envUnterminatedQuoteLine(std::string_view text) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto def = parseDefinition(text, pos);
        if (def && def->unterminated) {
            const auto before = text.substr(0, pos);
            return static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n')) + 1;
        }
        pos = def ? def->end : lineEnd(text, pos).second;
    }
    return std::nullopt;
}

namespace detail {

FileEdit envFileEdit(const HookConfig& config) {
    FileEdit out;
    for (const auto& [key, value] : config.set) {
        if (!isValidKey(key)) {
            out.error = "invalid key '" + key + "'";
            return out;
        }
    }
    for (const auto& key : config.unset) {
        if (!isValidKey(key)) {
            out.error = "invalid key '" + key + "'";
            return out;
        }
    }
    out.edit = [set = config.set, unset = config.unset](std::string_view text, bool, const std::string&) {
        TextEdit edit;
        edit.text = rewriteEnvText(text, set, unset, &edit.changed);
        if (edit.changed) {
            if (const auto line = envUnterminatedQuoteLine(text)) {
                edit.error = "line " + std::to_string(*line) +
                             ": a quoted value is never closed; not editing the file (a quote written after it would "
                             "close it and change what the file says)";
            }
        }
        return edit;
    };
    out.change = describeChange(config);
    return out;
}

}  // namespace detail

HookResult applyEnvFile(const HookConfig& config) {
    const auto start = std::chrono::steady_clock::now();
    auto finish = [start](bool ok, std::string message) { return detail::finishedResult(start, ok, std::move(message)); };
    if (config.path.empty()) {
        return finish(false, "no path configured");
    }
    detail::FileEdit planned = detail::envFileEdit(config);
    if (planned.error) {
        return finish(false, std::move(*planned.error));
    }
    return detail::editFileInPlace(config, planned.edit, planned.change);
}

}  // namespace rollguard::agent
