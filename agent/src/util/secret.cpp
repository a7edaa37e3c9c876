#include "util/secret.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "util/atomic_file.h"

namespace rollguard::agent {

namespace {

std::string trimmedSecret(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0) {
        text.remove_prefix(1);
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) {
        text.remove_suffix(1);
    }
    return std::string(text);
}

}  // namespace

bool readSecret(const std::string& file, const std::string& env, const std::string& what, std::string& secret,
                std::string& error, std::string* permission_problem) {
    if (!file.empty()) {
        struct stat st {};
        if (::stat(file.c_str(), &st) != 0) {
            error = "cannot read " + what + " file " + file + ": " + errnoText(errno);
            return false;
        }
        if ((st.st_mode & 077) != 0) {
            if (permission_problem != nullptr) {
                *permission_problem = fmt::format(
                    "{} file {} is accessible by group or others (mode {:o}): chmod 600 {}", what, file,
                    st.st_mode & 0777, file);
            } else {
                spdlog::warn("{} file {} is readable by group or others (mode {:o}); chmod 600 it", what, file,
                             st.st_mode & 0777);
            }
        }
        std::ifstream in(file, std::ios::binary);
        if (!in) {
            error = "cannot read " + what + " file " + file;
            return false;
        }
        std::stringstream text;
        text << in.rdbuf();
        secret = trimmedSecret(text.str());
        if (secret.empty()) {
            error = what + " file " + file + " is empty";
            return false;
        }
        return true;
    }
    if (!env.empty()) {
        const char* value = std::getenv(env.c_str());
        if (value == nullptr || trimmedSecret(value).empty()) {
            error = what + ": environment variable " + env + " is not set";
            return false;
        }
        secret = trimmedSecret(value);
        return true;
    }
    error = "no " + what + " configured";
    return false;
}

}  // namespace rollguard::agent
