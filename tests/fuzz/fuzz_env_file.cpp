// Fuzz target: the env-file rewriter (rewriteEnvText, agent/src/hooks/env_file.cpp).
// Input: `KEY\0VALUE\0TEXT`: the key K (made a valid [A-Za-z_][A-Za-z0-9_]* name when it
// is not one, as applyEnvFile requires), the new value V and the file's text. Missing
// separators mean K = "KEY", V = "v". Checks (abort on violation), with a reference
// reader of the documented dialect written here, independently of env_file.cpp:
//  - rewriting with nothing to set or unset returns the text unchanged;
//  - `changed` is true exactly when the output differs;
//  - K ends up defined, every definition of K has the value V;
//  - only K's lines change: the output without K's definitions is the input without
//    them, byte for byte and in order (plus the '\n' put before an appended K line);
//  - rewriting the output again gives the same text (idempotent);
//  - unsetting K leaves no definition of K and the other lines as they were.
// A text with a quoted value that is never closed is only checked for the first point:
// applyEnvFile refuses to edit it (envUnterminatedQuoteLine).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_common.h"
#include "rollguard/agent/hooks.h"

using rollguard::fuzz::check;

namespace {

bool isBlank(char c) {
    return c == ' ' || c == '\t';
}

/// One definition as the documented dialect reads it: its bytes [begin, end) and value.
struct Def {
    std::size_t begin = 0;
    std::size_t end = 0;
    std::string key;
    std::string value;
};

std::size_t lineEndAfter(std::string_view text, std::size_t pos) {
    const std::size_t nl = text.find('\n', pos);
    return nl == std::string_view::npos ? text.size() : nl + 1;
}

std::size_t contentEnd(std::string_view text, std::size_t pos) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {
        return text.size();
    }
    if (nl > pos && text[nl - 1] == '\r') {
        --nl;
    }
    return nl;
}

/// Every definition in `text`, in order (the reference reader).
std::vector<Def> readDefinitions(std::string_view text) {
    std::vector<Def> defs;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t line_end = lineEndAfter(text, pos);
        const std::size_t content_end = contentEnd(text, pos);
        std::size_t i = pos;
        while (i < content_end && isBlank(text[i])) {
            ++i;
        }
        if (i >= content_end || text[i] == '#' || text[i] == ';') {
            pos = line_end;
            continue;
        }
        // `export` followed by blanks and then something other than '=' is a prefix.
        if (text.substr(i, 6) == "export" && i + 6 < content_end && isBlank(text[i + 6])) {
            std::size_t j = i + 6;
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
        const std::size_t key_end = i;
        while (i < content_end && isBlank(text[i])) {
            ++i;
        }
        if (key_end == key_begin || i >= content_end || text[i] != '=') {
            pos = line_end;
            continue;
        }
        ++i;
        while (i < content_end && isBlank(text[i])) {
            ++i;
        }
        Def d;
        d.begin = pos;
        d.key = std::string(text.substr(key_begin, key_end - key_begin));
        bool quoted = false;
        if (i < content_end && text[i] == '\'') {
            const std::size_t close = text.find('\'', i + 1);
            if (close != std::string_view::npos) {
                d.value = std::string(text.substr(i + 1, close - i - 1));
                d.end = lineEndAfter(text, close);
                quoted = true;
            }
        } else if (i < content_end && text[i] == '"') {
            std::string value;
            for (std::size_t k = i + 1; k < text.size(); ++k) {
                const char c = text[k];
                if (c == '"') {
                    d.value = value;
                    d.end = lineEndAfter(text, k);
                    quoted = true;
                    break;
                }
                if (c == '\\' && k + 1 < text.size()) {
                    const char n = text[k + 1];
                    if (n == '"' || n == '\\' || n == '$' || n == '`') {
                        value += n;
                        ++k;
                        continue;
                    }
                    if (n == 'n') {
                        value += '\n';
                        ++k;
                        continue;
                    }
                }
                value += c;
            }
        }
        if (!quoted) {
            std::size_t value_end = content_end;
            while (value_end > i && isBlank(text[value_end - 1])) {
                --value_end;
            }
            d.value = std::string(text.substr(i, value_end - i));
            d.end = line_end;
        }
        pos = d.end;
        defs.push_back(std::move(d));
    }
    return defs;
}

/// `text` without the definitions of `key`.
std::string without(std::string_view text, const std::string& key) {
    std::string out;
    std::size_t pos = 0;
    for (const auto& d : readDefinitions(text)) {
        if (d.key == key) {
            out.append(text.substr(pos, d.begin - pos));
            pos = d.end;
        }
    }
    out.append(text.substr(pos));
    return out;
}

std::vector<std::string> valuesOf(std::string_view text, const std::string& key) {
    std::vector<std::string> values;
    for (const auto& d : readDefinitions(text)) {
        if (d.key == key) {
            values.push_back(d.value);
        }
    }
    return values;
}

std::string validKey(std::string_view raw) {
    std::string key;
    for (const char c : raw) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            key += c;
        }
    }
    if (key.empty() || (key[0] >= '0' && key[0] <= '9')) {
        key.insert(0, "K");
    }
    return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string key = "KEY";
    std::string value = "v";
    std::string_view text = input;
    if (const std::size_t a = input.find('\0'); a != std::string_view::npos) {
        if (const std::size_t b = input.find('\0', a + 1); b != std::string_view::npos) {
            key = validKey(input.substr(0, a));
            value = std::string(input.substr(a + 1, b - a - 1));
            text = input.substr(b + 1);
        }
    }
    using rollguard::agent::rewriteEnvText;

    bool changed = true;
    check(rewriteEnvText(text, {}, {}, &changed) == text && !changed, "an empty rewrite changed the text");

    if (rollguard::agent::envUnterminatedQuoteLine(text)) {
        return 0;  // applyEnvFile refuses to edit such a file: a quote written later would close it
    }
    const std::string out = rewriteEnvText(text, {{key, value}}, {}, &changed);
    check(changed == (out != text), "'changed' does not tell whether the text changed");

    const auto values = valuesOf(out, key);
    check(!values.empty(), "the key is not defined after the rewrite");
    for (const auto& v : values) {
        check(v == value, "a definition of the key does not have the new value");
    }

    std::string expected_rest = without(text, key);
    if (valuesOf(text, key).empty() && !text.empty() && text.back() != '\n') {
        expected_rest += '\n';
    }
    check(without(out, key) == expected_rest, "a line other than the key's changed");

    bool again_changed = true;
    check(rewriteEnvText(out, {{key, value}}, {}, &again_changed) == out && !again_changed,
          "rewriting twice differs from rewriting once");

    const std::string removed = rewriteEnvText(text, {}, {key}, nullptr);
    check(valuesOf(removed, key).empty(), "the key is still defined after unset");
    check(removed == without(text, key), "unset changed a line other than the key's");
    return 0;
}
