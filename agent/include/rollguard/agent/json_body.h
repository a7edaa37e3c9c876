#pragma once
// The value extraction of `json` scrape sources: one JSON document (an HTTP answer or a
// local file) and the numbers read out of it by JSON Pointer. Pure code: no I/O, no
// clock; the scrape loop and the fuzz target tests/fuzz/fuzz_json_endpoint.cpp use it.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace rollguard::agent {

/// One JSON body and the numbers at JSON Pointers (RFC 6901) in it, with simdjson's DOM
/// parser. Owns the parser, which holds the parsed document.
/// Thread-safety: none; one instance per thread.
class JsonBody {
public:
    JsonBody();
    ~JsonBody();
    JsonBody(const JsonBody&) = delete;
    JsonBody& operator=(const JsonBody&) = delete;

    /// Parses `body` (valid UTF-8, every value validated): true when it is exactly one JSON
    /// object or array, blanks around it allowed and nothing else. False otherwise (a
    /// scalar, trailing content such as a second document, bad JSON); numberAt() then
    /// finds nothing. Cost: linear in the body. Never throws on bad input.
    bool load(std::string_view body);

    /// The number at `pointer` in the loaded body: a number, a numeric string (all of it
    /// a std::from_chars double) or a boolean (1/0). nullopt with `error` set ("no value
    /// at /p", "value at /p is not a number", simdjson's message) when absent, not a
    /// number, the pointer is malformed or no body is loaded. NaN and infinities from a
    /// numeric string are returned as they are: callers decide.
    std::optional<double> numberAt(const std::string& pointer, std::string& error);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rollguard::agent
