#pragma once
// Reading a credential from a `*_file` or `*_env` key: one function for the hooks, the
// scrape sources and the admin token, so that an empty file or a file readable by others
// is treated the same wherever a secret is read.

#include <string>

namespace rollguard::agent {

/// Reads a secret from a file or an environment variable (surrounding whitespace
/// trimmed). Returns false with `error` set when it cannot; `what` names it in messages.
/// An empty (or whitespace-only) file or environment value is an error, not an empty
/// secret: a request without its credential would fail anyway, and later, with a less
/// useful message. A file readable by group or others is read all the same; that is
/// logged as a warning, or, with `permission_problem`, put there instead ("... chmod
/// 600 ...") for the caller to report (the preflight; a scrape source logs it once).
bool readSecret(const std::string& file, const std::string& env, const std::string& what, std::string& secret,
                std::string& error, std::string* permission_problem = nullptr);

}  // namespace rollguard::agent
