#include "agent_config.h"

#include <sys/stat.h>

#include "temp_dir.h"

namespace rollguard::testing {

void writeAdminToken(const std::filesystem::path& file) {
    writeFile(file, std::string(kAdminToken) + "\n");
    ::chmod(file.c_str(), 0600);
}

std::string adminAuthorization() {
    return std::string("Authorization: Bearer ") + kAdminToken;
}

std::string errorRatioConfig(const std::filesystem::path& dir, const ErrorRatioConfig& extra) {
    return "[agent]\n" + extra.agent +
           "\n"
           "[[source]]\n"
           "name = \"app\"\n"
           "type = \"json_log\"\n"
           "paths = [\"" + (dir / "app.log").string() + "\"]\n"
           "read_from = \"beginning\"\n"
           "error = { field = \"status\", gte = 500 }\n"
           "\n"
           "[[rule]]\n"
           "name = \"errors\"\n"
           "source = \"app\"\n"
           "metric = \"error_ratio\"\n"
           "above = 0.5\n"
           "window = \"1m\"\n" +
           extra.rule + "\n" + extra.tail;
}

std::string statusLines(int n, int status) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += "{\"status\":" + std::to_string(status) + "}\n";
    }
    return out;
}

}  // namespace rollguard::testing
