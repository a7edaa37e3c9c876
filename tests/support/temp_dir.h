#pragma once

#include <filesystem>
#include <string>

namespace rollguard::testing {

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on
/// destruction. Set ROLLGUARD_KEEP_TEST_DIRS=1 to keep it for debugging.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

/// Whole-file helpers for tests.
std::string readFile(const std::filesystem::path& path);
void writeFile(const std::filesystem::path& path, const std::string& content);
void appendFile(const std::filesystem::path& path, const std::string& content);

}  // namespace rollguard::testing
