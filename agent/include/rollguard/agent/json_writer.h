#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rollguard/rules/clock.h"

namespace rollguard::agent {

/// A small streaming JSON writer: correct escaping (quotes, backslash, control
/// characters as \uXXXX), commas placed for you, non-finite doubles written as null,
/// doubles in their shortest round-trip form. Not thread-safe.
class JsonWriter {
public:
    JsonWriter& beginObject();
    JsonWriter& endObject();
    JsonWriter& beginArray();
    JsonWriter& endArray();
    JsonWriter& key(std::string_view name);
    JsonWriter& value(std::string_view s);
    JsonWriter& value(const char* s) { return value(std::string_view(s)); }
    JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
    JsonWriter& value(double d);
    JsonWriter& value(std::int64_t i);
    JsonWriter& value(std::uint64_t u);
    JsonWriter& value(int i) { return value(static_cast<std::int64_t>(i)); }
    JsonWriter& value(bool b);
    JsonWriter& null();
    /// Inserts `json`, a complete JSON value written elsewhere, as the next value (as is:
    /// the caller vouches that it is valid JSON).
    JsonWriter& raw(std::string_view json);

    const std::string& str() const { return out_; }

private:
    void separate();
    std::string out_;
    std::vector<bool> has_items_;  // per open container
    bool after_key_ = false;
};

/// Appends `s` to `out` as a JSON string literal, quotes included. Strings come from
/// configs and log lines, so anything may be in them: invalid UTF-8 becomes U+FFFD and
/// control characters are escaped, so receivers always get a parseable document.
void appendJsonString(std::string& out, std::string_view s);

/// RFC 3339 UTC with milliseconds: "2026-11-23T15:20:01.123Z".
std::string formatRfc3339(rules::TimePoint t);
/// The same in the local time zone with its offset: "2026-12-01T11:29:45.123+01:00".
std::string formatRfc3339Local(rules::TimePoint t);

}  // namespace rollguard::agent
