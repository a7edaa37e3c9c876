// json_file hook: sets values by JSON Pointer in a JSON flag file, keeping key order and
// the text of untouched numbers and strings.
//
// The parser is ours rather than simdjson's: the document is small, must round-trip
// (member order, duplicate keys, number text such as 1.50 or integers beyond 2^64) and
// every syntax error needs a line:col, which simdjson's on-demand API does not give for
// all errors (e.g. an unclosed string is found before any position is known).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "hooks/hooks_internal.h"
#include "rollguard/agent/hooks.h"
#include "rollguard/agent/json_writer.h"

namespace rollguard::agent {
namespace {

/// Nesting deeper than this is refused rather than risking the stack.
constexpr int kMaxDepth = 256;

struct JsonMember;

/// One value of the ordered tree.
struct JsonValue {
    enum class Kind { Null, Bool, Number, String, Array, Object };
    Kind kind = Kind::Null;
    bool boolean = false;
    std::string text;    // Number: its literal; String: its literal, quotes and escapes as written
    std::string string;  // String: decoded
    std::vector<JsonValue> items;     // Array
    std::vector<JsonMember> members;  // Object, in document order
};

struct JsonMember {
    std::string key;       // decoded
    std::string key_text;  // literal as written
    JsonValue value;
};

const char* kindName(JsonValue::Kind kind) {
    switch (kind) {
        case JsonValue::Kind::Null:
            return "null";
        case JsonValue::Kind::Bool:
            return "a boolean";
        case JsonValue::Kind::Number:
            return "a number";
        case JsonValue::Kind::String:
            return "a string";
        case JsonValue::Kind::Array:
            return "an array";
        case JsonValue::Kind::Object:
            return "an object";
    }
    return "a value";
}

/// Length of the valid UTF-8 sequence at s[i] (1 to 4), or 0 when it is not one.
std::size_t utf8Length(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
        return 1;
    }
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size()) {
        return 0;
    }
    for (std::size_t k = 1; k < n; ++k) {
        const auto d = static_cast<unsigned char>(s[i + k]);
        if ((d & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (d & 0x3F);
    }
    const bool overlong = (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return n;
}

void appendUtf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

/// A strict RFC 8259 parser into JsonValue. Single use, not thread-safe.
class JsonParser {
public:
    explicit JsonParser(std::string_view text) : s_(text) {}

    /// The document, or nullopt with error() set.
    std::optional<JsonValue> parse() {
        if (s_.substr(0, 3) == "\xEF\xBB\xBF") {
            pos_ = 3;  // a UTF-8 byte order mark; dropped when the file is rewritten
        }
        skipSpace();
        if (pos_ >= s_.size()) {
            fail(pos_, "empty document (expected a JSON value, e.g. {})");
            return std::nullopt;
        }
        JsonValue root;
        if (!parseValue(root, 0)) {
            return std::nullopt;
        }
        skipSpace();
        if (pos_ < s_.size()) {
            fail(pos_, "unexpected " + describeAt(pos_) + " after the end of the document");
            return std::nullopt;
        }
        return root;
    }

    /// "<line>:<col>: <what>", columns in bytes from 1.
    std::string error() const {
        std::size_t line = 1;
        std::size_t line_start = 0;
        for (std::size_t i = 0; i < error_at_ && i < s_.size(); ++i) {
            if (s_[i] == '\n') {
                ++line;
                line_start = i + 1;
            }
        }
        return std::to_string(line) + ":" + std::to_string(error_at_ - line_start + 1) + ": " + error_;
    }

private:
    bool fail(std::size_t at, std::string what) {
        error_at_ = at;
        error_ = std::move(what);
        return false;
    }

    std::string describeAt(std::size_t at) const {
        if (at >= s_.size()) {
            return "end of file";
        }
        const auto c = static_cast<unsigned char>(s_[at]);
        if (c >= 0x20 && c < 0x7F) {
            return std::string("'") + static_cast<char>(c) + "'";
        }
        static const char* kHex = "0123456789abcdef";
        return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 0xF];
    }

    void skipSpace() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
            ++pos_;
        }
    }

    bool expectLiteral(std::string_view word) {
        if (s_.substr(pos_, word.size()) != word) {
            return fail(pos_, "invalid literal (expected " + std::string(word) + ")");
        }
        pos_ += word.size();
        return true;
    }

    bool parseValue(JsonValue& out, int depth) {
        if (depth > kMaxDepth) {
            return fail(pos_, "nested deeper than " + std::to_string(kMaxDepth) + " levels");
        }
        if (pos_ >= s_.size()) {
            return fail(pos_, "unexpected end of file (expected a value)");
        }
        const char c = s_[pos_];
        switch (c) {
            case '{':
                return parseObject(out, depth);
            case '[':
                return parseArray(out, depth);
            case '"':
                out.kind = JsonValue::Kind::String;
                return parseString(out.string, out.text);
            case 't':
                out.kind = JsonValue::Kind::Bool;
                out.boolean = true;
                return expectLiteral("true");
            case 'f':
                out.kind = JsonValue::Kind::Bool;
                out.boolean = false;
                return expectLiteral("false");
            case 'n':
                out.kind = JsonValue::Kind::Null;
                return expectLiteral("null");
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    out.kind = JsonValue::Kind::Number;
                    return parseNumber(out.text);
                }
                return fail(pos_, "unexpected " + describeAt(pos_) + " (expected a value)");
        }
    }

    bool parseObject(JsonValue& out, int depth) {
        out.kind = JsonValue::Kind::Object;
        ++pos_;  // '{'
        std::unordered_map<std::string, std::size_t> index;
        skipSpace();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return true;
        }
        for (;;) {
            skipSpace();
            if (pos_ >= s_.size() || s_[pos_] != '"') {
                return fail(pos_, "unexpected " + describeAt(pos_) + " (expected a key in double quotes)");
            }
            JsonMember member;
            if (!parseString(member.key, member.key_text)) {
                return false;
            }
            skipSpace();
            if (pos_ >= s_.size() || s_[pos_] != ':') {
                return fail(pos_, "unexpected " + describeAt(pos_) + " (expected ':')");
            }
            ++pos_;
            skipSpace();
            if (!parseValue(member.value, depth + 1)) {
                return false;
            }
            // Duplicate keys: the last value wins, at the first key's position.
            if (const auto it = index.find(member.key); it != index.end()) {
                out.members[it->second].value = std::move(member.value);
            } else {
                index.emplace(member.key, out.members.size());
                out.members.push_back(std::move(member));
            }
            skipSpace();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == '}') {
                ++pos_;
                return true;
            }
            return fail(pos_, "unexpected " + describeAt(pos_) + " (expected ',' or '}')");
        }
    }

    bool parseArray(JsonValue& out, int depth) {
        out.kind = JsonValue::Kind::Array;
        ++pos_;  // '['
        skipSpace();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return true;
        }
        for (;;) {
            skipSpace();
            JsonValue item;
            if (!parseValue(item, depth + 1)) {
                return false;
            }
            out.items.push_back(std::move(item));
            skipSpace();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == ']') {
                ++pos_;
                return true;
            }
            return fail(pos_, "unexpected " + describeAt(pos_) + " (expected ',' or ']')");
        }
    }

    bool parseHex4(std::size_t at, std::uint32_t& out) {
        out = 0;
        if (at + 4 > s_.size()) {
            return fail(at, "incomplete \\u escape");
        }
        for (std::size_t k = 0; k < 4; ++k) {
            const char h = s_[at + k];
            out <<= 4;
            if (h >= '0' && h <= '9') {
                out |= static_cast<std::uint32_t>(h - '0');
            } else if (h >= 'a' && h <= 'f') {
                out |= static_cast<std::uint32_t>(h - 'a' + 10);
            } else if (h >= 'A' && h <= 'F') {
                out |= static_cast<std::uint32_t>(h - 'A' + 10);
            } else {
                return fail(at + k, "invalid hex digit in \\u escape");
            }
        }
        return true;
    }

    // At the opening quote. Leaves pos_ after the closing one.
    bool parseString(std::string& decoded, std::string& literal) {
        const std::size_t begin = pos_;
        ++pos_;
        for (;;) {
            if (pos_ >= s_.size()) {
                return fail(begin, "unterminated string");
            }
            const auto c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                literal = std::string(s_.substr(begin, pos_ - begin));
                return true;
            }
            if (c < 0x20) {
                return fail(pos_, "control character in a string (escape it, e.g. \\n)");
            }
            if (c >= 0x80) {
                const std::size_t n = utf8Length(s_, pos_);
                if (n == 0) {
                    return fail(pos_, "invalid UTF-8 in a string");
                }
                decoded.append(s_.substr(pos_, n));
                pos_ += n;
                continue;
            }
            if (c != '\\') {
                decoded += static_cast<char>(c);
                ++pos_;
                continue;
            }
            if (pos_ + 1 >= s_.size()) {
                return fail(begin, "unterminated string");
            }
            const char e = s_[pos_ + 1];
            switch (e) {
                case '"':
                case '\\':
                case '/':
                    decoded += e;
                    break;
                case 'b':
                    decoded += '\b';
                    break;
                case 'f':
                    decoded += '\f';
                    break;
                case 'n':
                    decoded += '\n';
                    break;
                case 'r':
                    decoded += '\r';
                    break;
                case 't':
                    decoded += '\t';
                    break;
                case 'u': {
                    std::uint32_t cp = 0;
                    if (!parseHex4(pos_ + 2, cp)) {
                        return false;
                    }
                    if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        return fail(pos_, "lone low surrogate in \\u escape");
                    }
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        std::uint32_t low = 0;
                        if (s_.substr(pos_ + 6, 2) != "\\u" || !parseHex4(pos_ + 8, low) || low < 0xDC00 ||
                            low > 0xDFFF) {
                            return fail(pos_, "high surrogate in \\u escape without a low surrogate after it");
                        }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        pos_ += 6;
                    }
                    appendUtf8(decoded, cp);
                    pos_ += 6;
                    continue;
                }
                default:
                    return fail(pos_, "invalid escape \\" + std::string(1, e) + " in a string");
            }
            pos_ += 2;
        }
    }

    bool parseNumber(std::string& literal) {
        const std::size_t begin = pos_;
        auto digits = [this] {
            const std::size_t from = pos_;
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
                ++pos_;
            }
            return pos_ - from;
        };
        if (s_[pos_] == '-') {
            ++pos_;
        }
        if (pos_ < s_.size() && s_[pos_] == '0') {
            ++pos_;
            if (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
                return fail(begin, "invalid number: no leading zeros");
            }
        } else if (digits() == 0) {
            return fail(pos_, "invalid number: expected a digit");
        }
        if (pos_ < s_.size() && s_[pos_] == '.') {
            ++pos_;
            if (digits() == 0) {
                return fail(pos_, "invalid number: expected a digit after '.'");
            }
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) {
                ++pos_;
            }
            if (digits() == 0) {
                return fail(pos_, "invalid number: expected a digit in the exponent");
            }
        }
        literal = std::string(s_.substr(begin, pos_ - begin));
        return true;
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    std::size_t error_at_ = 0;
    std::string error_;
};

void writeIndent(std::string& out, int indent) {
    out.append(static_cast<std::size_t>(indent), ' ');
}

/// Pretty-prints with 2-space indentation; literals as they were read or made.
void writeJson(std::string& out, const JsonValue& v, int indent) {
    switch (v.kind) {
        case JsonValue::Kind::Null:
            out += "null";
            return;
        case JsonValue::Kind::Bool:
            out += v.boolean ? "true" : "false";
            return;
        case JsonValue::Kind::Number:
        case JsonValue::Kind::String:
            out += v.text;
            return;
        case JsonValue::Kind::Array:
            if (v.items.empty()) {
                out += "[]";
                return;
            }
            out += "[\n";
            for (std::size_t i = 0; i < v.items.size(); ++i) {
                writeIndent(out, indent + 2);
                writeJson(out, v.items[i], indent + 2);
                out += i + 1 < v.items.size() ? ",\n" : "\n";
            }
            writeIndent(out, indent);
            out += ']';
            return;
        case JsonValue::Kind::Object:
            if (v.members.empty()) {
                out += "{}";
                return;
            }
            out += "{\n";
            for (std::size_t i = 0; i < v.members.size(); ++i) {
                writeIndent(out, indent + 2);
                out += v.members[i].key_text;
                out += ": ";
                writeJson(out, v.members[i].value, indent + 2);
                out += i + 1 < v.members.size() ? ",\n" : "\n";
            }
            writeIndent(out, indent);
            out += '}';
            return;
    }
}

bool isIntegerLiteral(std::string_view text) {
    return text.find_first_of(".eE") == std::string_view::npos;
}

std::optional<double> literalAsDouble(std::string_view text) {
    double d = 0.0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    if (ec != std::errc{} || end != text.data() + text.size()) {
        return std::nullopt;  // out of double's range: equal to no finite value
    }
    return d;
}

/// Does the number literal `text` have the value `i`?
bool numberEquals(std::string_view text, std::int64_t i) {
    if (isIntegerLiteral(text)) {
        std::int64_t parsed = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
        return ec == std::errc{} && end == text.data() + text.size() && parsed == i;
    }
    const auto d = literalAsDouble(text);
    // 2^63 as a double: values at or beyond it are no int64.
    return d && std::fabs(*d) < 9223372036854775808.0 && *d == static_cast<double>(i) &&
           static_cast<std::int64_t>(*d) == i;
}

bool equalsWanted(const JsonValue& v, const FlagValue& wanted) {
    return std::visit(
        [&v](const auto& w) {
            using T = std::decay_t<decltype(w)>;
            if constexpr (std::is_same_v<T, bool>) {
                return v.kind == JsonValue::Kind::Bool && v.boolean == w;
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                return v.kind == JsonValue::Kind::Number && numberEquals(v.text, w);
            } else if constexpr (std::is_same_v<T, double>) {
                const auto d = v.kind == JsonValue::Kind::Number ? literalAsDouble(v.text) : std::nullopt;
                return d && *d == w;
            } else {
                return v.kind == JsonValue::Kind::String && v.string == w;
            }
        },
        wanted);
}

JsonValue makeValue(const FlagValue& wanted) {
    JsonValue v;
    std::visit(
        [&v](const auto& w) {
            using T = std::decay_t<decltype(w)>;
            if constexpr (std::is_same_v<T, bool>) {
                v.kind = JsonValue::Kind::Bool;
                v.boolean = w;
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                v.kind = JsonValue::Kind::Number;
                v.text = std::to_string(w);
            } else if constexpr (std::is_same_v<T, double>) {
                v.kind = JsonValue::Kind::Number;
                v.text = detail::floatText(w);  // finite: checked before
            } else {
                v.kind = JsonValue::Kind::String;
                v.string = w;
                appendJsonString(v.text, w);
            }
        },
        wanted);
    return v;
}

JsonMember* findMember(JsonValue& object, std::string_view key) {
    for (auto& m : object.members) {
        if (m.key == key) {
            return &m;
        }
    }
    return nullptr;
}

/// The array element `segment` names in `array`, or an error text.
std::variant<JsonValue*, std::string> arrayElement(JsonValue& array, const std::vector<std::string>& segments,
                                                   std::size_t n) {
    const std::string& segment = segments[n];
    if (segment == "-") {
        return "'-' (append) is not supported: every run would append again";
    }
    const auto index = detail::pointerArrayIndex(segment);
    if (!index) {
        return detail::pointerPlaceName(segments, n) + " is an array and '" + segment + "' is not an index";
    }
    if (*index >= array.items.size()) {
        return "index " + segment + " is out of range (" + detail::pointerPlaceName(segments, n) + " has " +
               std::to_string(array.items.size()) + " elements)";
    }
    return &array.items[*index];
}

/// Sets the value at `segments`; returns an error text naming `pointer`, or nullopt.
std::optional<std::string> setValue(JsonValue& root, const std::vector<std::string>& segments,
                                    const std::string& pointer, const FlagValue& wanted, bool& changed) {
    JsonValue* current = &root;
    for (std::size_t n = 0; n < segments.size(); ++n) {
        const bool last = n + 1 == segments.size();
        JsonValue* next = nullptr;
        if (current->kind == JsonValue::Kind::Object) {
            if (JsonMember* m = findMember(*current, segments[n])) {
                next = &m->value;
            } else {
                JsonMember member;
                member.key = segments[n];
                appendJsonString(member.key_text, segments[n]);
                if (last) {
                    member.value = makeValue(wanted);
                } else {
                    member.value.kind = JsonValue::Kind::Object;
                }
                current->members.push_back(std::move(member));
                changed = true;
                if (last) {
                    return std::nullopt;
                }
                next = &current->members.back().value;
            }
        } else if (current->kind == JsonValue::Kind::Array) {
            auto element = arrayElement(*current, segments, n);
            if (auto* why = std::get_if<std::string>(&element)) {
                return "cannot set " + pointer + ": " + *why;
            }
            next = std::get<JsonValue*>(element);
        } else {
            return "cannot set " + pointer + ": " + detail::pointerPlaceName(segments, n) + " is " + kindName(current->kind) +
                   ", not an object";
        }
        if (last) {
            if (!equalsWanted(*next, wanted)) {
                *next = makeValue(wanted);
                changed = true;
            }
            return std::nullopt;
        }
        current = next;
    }
    return std::nullopt;
}

/// Removes the member at `segments`; absent is fine. Returns an error text, or nullopt.
std::optional<std::string> unsetValue(JsonValue& root, const std::vector<std::string>& segments,
                                      const std::string& pointer, bool& changed) {
    JsonValue* current = &root;
    for (std::size_t n = 0; n < segments.size(); ++n) {
        const bool last = n + 1 == segments.size();
        if (current->kind == JsonValue::Kind::Object) {
            auto& members = current->members;
            std::size_t i = 0;
            while (i < members.size() && members[i].key != segments[n]) {
                ++i;
            }
            if (i == members.size()) {
                return std::nullopt;  // no such member: nothing to remove
            }
            if (last) {
                members.erase(members.begin() + static_cast<std::ptrdiff_t>(i));
                changed = true;
                return std::nullopt;
            }
            current = &members[i].value;
        } else if (current->kind == JsonValue::Kind::Array) {
            if (last) {
                return "cannot unset " + pointer +
                       ": removing array elements is not supported (a second run would remove the next one)";
            }
            const auto index = detail::pointerArrayIndex(segments[n]);
            if (!index || *index >= current->items.size()) {
                return std::nullopt;  // no such element: nothing to remove
            }
            current = &current->items[*index];
        } else {
            return std::nullopt;  // nothing below a scalar: already absent
        }
    }
    return std::nullopt;
}

const JsonMember* findMember(const JsonValue& object, std::string_view key) {
    for (const auto& m : object.members) {
        if (m.key == key) {
            return &m;
        }
    }
    return nullptr;
}

/// Is `have` the element `want` describes? Objects: the same members with equal values,
/// in any order (JSON objects are unordered); plain values as `set` compares them.
bool sameElement(const JsonValue& have, const FlagAppend& want) {
    if (!want.is_object) {
        return equalsWanted(have, want.value);
    }
    if (have.kind != JsonValue::Kind::Object || have.members.size() != want.fields.size()) {
        return false;
    }
    for (const auto& [key, value] : want.fields) {
        const JsonMember* m = findMember(have, key);
        if (m == nullptr || !equalsWanted(m->value, value)) {
            return false;
        }
    }
    return true;
}

JsonValue makeElement(const FlagAppend& want) {
    if (!want.is_object) {
        return makeValue(want.value);
    }
    JsonValue v;
    v.kind = JsonValue::Kind::Object;
    for (const auto& [key, value] : want.fields) {
        JsonMember member;
        member.key = key;
        appendJsonString(member.key_text, key);
        member.value = makeValue(value);
        v.members.push_back(std::move(member));
    }
    return v;
}

bool isFinite(const FlagValue& value) {
    const auto* d = std::get_if<double>(&value);
    return d == nullptr || std::isfinite(*d);
}

/// Appends `want` to the array at `segments` unless an equal element is there; returns
/// an error text naming `pointer`, or nullopt.
std::optional<std::string> appendValue(JsonValue& root, const std::vector<std::string>& segments,
                                       const std::string& pointer, const FlagAppend& want, bool& changed) {
    JsonValue* current = &root;
    for (std::size_t n = 0; n < segments.size(); ++n) {
        const bool last = n + 1 == segments.size();
        if (current->kind == JsonValue::Kind::Object) {
            if (JsonMember* m = findMember(*current, segments[n])) {
                current = &m->value;
                continue;
            }
            JsonMember member;
            member.key = segments[n];
            appendJsonString(member.key_text, segments[n]);
            member.value.kind = last ? JsonValue::Kind::Array : JsonValue::Kind::Object;
            current->members.push_back(std::move(member));
            changed = true;
            current = &current->members.back().value;
        } else if (current->kind == JsonValue::Kind::Array) {
            if (last && segments[n] == "-") {
                return "cannot append to " + pointer + ": name the array itself (\"" + detail::pointerPrefix(segments, n) +
                       "\"), without \"/-\"";
            }
            auto element = arrayElement(*current, segments, n);
            if (auto* why = std::get_if<std::string>(&element)) {
                return "cannot append to " + pointer + ": " + *why;
            }
            current = std::get<JsonValue*>(element);
        } else {
            return "cannot append to " + pointer + ": " + detail::pointerPlaceName(segments, n) + " is " + kindName(current->kind) +
                   ", not an object";
        }
    }
    if (current->kind != JsonValue::Kind::Array) {
        return "cannot append to " + pointer + ": " + detail::pointerPlaceName(segments, segments.size()) + " is " +
               kindName(current->kind) + ", not an array";
    }
    for (const auto& item : current->items) {
        if (sameElement(item, want)) {
            return std::nullopt;  // already recorded: a retry or a restart appends nothing
        }
    }
    current->items.push_back(makeElement(want));
    changed = true;
    return std::nullopt;
}

}  // namespace

FlagFileEdit rewriteJsonText(std::string_view text, const std::vector<FlagSetting>& set,
                             const std::vector<std::string>& unset, std::string_view name) {
    return rewriteJsonText(text, set, unset, {}, name);
}

FlagFileEdit rewriteJsonText(std::string_view text, const std::vector<FlagSetting>& set,
                             const std::vector<std::string>& unset, const std::vector<FlagAppend>& append,
                             std::string_view name) {
    FlagFileEdit result;
    JsonParser parser(text);
    auto root = parser.parse();
    if (!root) {
        result.error = std::string(name) + ":" + parser.error();
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
        if (const auto* d = std::get_if<double>(&s.value); d != nullptr && !std::isfinite(*d)) {
            result.error = "cannot set " + s.pointer + ": JSON has no NaN or infinity";
            return result;
        }
        if (auto err = setValue(*root, *segments, s.pointer, s.value, changed)) {
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
        if (auto err = unsetValue(*root, *segments, pointer, changed)) {
            result.error = std::move(*err);
            return result;
        }
    }
    for (const auto& a : append) {
        std::string why;
        const auto segments = parseJsonPointer(a.pointer, &why);
        if (!segments) {
            result.error = "invalid pointer '" + a.pointer + "': " + why;
            return result;
        }
        const bool finite = isFinite(a.value) && std::all_of(a.fields.begin(), a.fields.end(), [](const auto& f) {
                                return isFinite(f.second);
                            });
        if (!finite) {
            result.error = "cannot append to " + a.pointer + ": JSON has no NaN or infinity";
            return result;
        }
        if (auto err = appendValue(*root, *segments, a.pointer, a, changed)) {
            result.error = std::move(*err);
            return result;
        }
    }
    result.ok = true;
    result.changed = changed;
    if (changed) {
        writeJson(result.text, *root, 0);
        result.text += '\n';
    } else {
        result.text = std::string(text);
    }
    return result;
}

FlagAppend renderFlagAppend(const FlagAppend& entry, const BreachEvent& event, const PayloadContext& context) {
    FlagAppend out = entry;
    const auto render = [&](FlagValue& value) {
        if (auto* s = std::get_if<std::string>(&value)) {
            *s = renderBodyTemplate(*s, event, context, false);
        }
    };
    render(out.value);
    for (auto& field : out.fields) {
        render(field.second);
    }
    return out;
}

HookResult applyJsonFile(const HookConfig& config) {
    return applyJsonFile(config, BreachEvent{});
}

namespace detail {

FileEdit jsonFileEdit(const HookConfig& config, const BreachEvent& event) {
    PayloadContext context;
    context.hook_name = config.name;
    context.external_url = config.external_url;
    std::vector<FlagAppend> append;
    append.reserve(config.flag_append.size());
    for (const auto& a : config.flag_append) {
        append.push_back(renderFlagAppend(a, event, context));
    }
    FileEdit out;
    out.edit = [set = config.flag_set, unset = config.unset, append = std::move(append)](
                   std::string_view text, bool exists, const std::string& path) {
        TextEdit edit;
        auto r = rewriteJsonText(exists ? text : std::string_view("{}"), set, unset, append, path);
        if (!r.ok) {
            edit.error = std::move(r.error);
            return edit;
        }
        edit.text = std::move(r.text);
        if (!exists && !r.changed) {
            edit.text = "{}\n";  // only unsets on a missing file: create it empty
        }
        edit.changed = r.changed || !exists;
        return edit;
    };
    out.change = describeFlagChange(config.flag_set, config.unset);
    for (const auto& a : config.flag_append) {
        out.change += (out.change.empty() ? "append to " : "; append to ") + a.pointer;
    }
    return out;
}

}  // namespace detail

HookResult applyJsonFile(const HookConfig& config, const BreachEvent& event) {
    const detail::FileEdit planned = detail::jsonFileEdit(config, event);
    return detail::editFileInPlace(config, planned.edit, planned.change);
}

}  // namespace rollguard::agent
