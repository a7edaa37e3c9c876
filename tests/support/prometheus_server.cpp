#include "prometheus_server.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>

#include "http_client.h"
#include "http_receiver.h"

namespace rollguard::testing {

namespace {

const char* const kPrometheusBinary = "/usr/bin/prometheus";
const char* const kNodeExporterCandidates[] = {"/usr/bin/prometheus-node-exporter", "/usr/bin/node_exporter"};

std::string findNodeExporter() {
    for (const char* path : kNodeExporterCandidates) {
        if (::access(path, X_OK) == 0) {
            return path;
        }
    }
    return {};
}

std::string readIfExists(const std::filesystem::path& path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec) ? readFile(path) : std::string();
}

std::string target(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

/// prometheus.yml: every job scraped every second; no rule files, alerting or remote
/// storage, so nothing leaves loopback.
std::string configText(std::uint16_t exporter_port, const std::vector<PrometheusScrapeJob>& extra_jobs) {
    std::string yml =
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: node\n"
        "    static_configs:\n"
        "      - targets: ['" +
        target(exporter_port) + "']\n";
    for (const PrometheusScrapeJob& job : extra_jobs) {
        yml += "  - job_name: '" + job.name + "'\n";
        yml += "    metrics_path: '" + job.metrics_path + "'\n";
        yml += "    static_configs:\n";
        yml += "      - targets: [";
        for (std::size_t i = 0; i < job.targets.size(); ++i) {
            yml += (i == 0 ? "'" : ", '") + job.targets[i] + "'";
        }
        yml += "]\n";
    }
    return yml;
}

}  // namespace

std::string urlEncode(const std::string& text) {
    static const char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' || u == '_' ||
            u == '.' || u == '~') {
            out += c;
        } else {
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 0xF];
        }
    }
    return out;
}

bool PrometheusServer::available() {
    return ::access(kPrometheusBinary, X_OK) == 0 && !findNodeExporter().empty();
}

PrometheusServer::PrometheusServer(std::vector<PrometheusScrapeJob> extra_jobs, std::chrono::milliseconds timeout) {
    if (!available()) {
        throw std::runtime_error(
            "prometheus or prometheus-node-exporter is not installed: run scripts/install-deps.sh");
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const auto left = [&] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    };

    std::filesystem::create_directories(dir_ / "textfile");
    exporter_ = std::make_unique<Process>(
        std::vector<std::string>{findNodeExporter(), "--web.listen-address=" + target(exporter_port_),
                                 "--collector.textfile.directory=" + (dir_ / "textfile").string(), "--log.level=error"},
        (dir_ / "node_exporter.out").string(), (dir_ / "node_exporter.err").string());

    writeFile(dir_ / "prometheus.yml", configText(exporter_port_, extra_jobs));
    prometheus_ = std::make_unique<Process>(
        std::vector<std::string>{kPrometheusBinary, "--config.file=" + (dir_ / "prometheus.yml").string(),
                                 "--storage.tsdb.path=" + (dir_ / "data").string(),
                                 "--web.listen-address=" + target(port_), "--log.level=warn",
                                 // Queries are few and small; the default reserves 20 slots.
                                 "--query.max-concurrency=4"},
        (dir_ / "prometheus.out").string(), (dir_ / "prometheus.err").string());

    const bool ready = eventually(
        [&] { return !prometheus_->running() || httpGet(port_, "/-/ready").status == 200; }, left());
    if (!ready || !prometheus_->running()) {
        throw std::runtime_error("prometheus did not become ready on " + url() + ": " + logs());
    }
    const std::string query = "/api/v1/query?query=" + urlEncode("up{job=\"node\"}");
    const bool scraped = eventually(
        [&] {
            const HttpResponse r = httpGet(port_, query);
            return r.status == 200 && r.body.find("\"job\":\"node\"") != std::string::npos;
        },
        left());
    if (!scraped) {
        throw std::runtime_error("prometheus on " + url() + " has no up{job=\"node\"} sample after " +
                                 std::to_string(timeout.count()) + " ms: " + logs());
    }
}

PrometheusServer::~PrometheusServer() {
    stop(prometheus_);
    stop(exporter_);
}

void PrometheusServer::stop(std::unique_ptr<Process>& process) {
    if (process) {
        process->signal(SIGTERM);
        process->wait(std::chrono::seconds{5});
        process.reset();  // SIGKILLs and reaps it if SIGTERM was not enough
    }
}

std::string PrometheusServer::url() const { return "http://" + target(port_); }

std::string PrometheusServer::textfileDir() const { return (dir_ / "textfile").string(); }

std::string PrometheusServer::logs() const {
    return "\n--- prometheus stderr:\n" + readIfExists(dir_ / "prometheus.err") + "\n--- node exporter stderr:\n" +
           readIfExists(dir_ / "node_exporter.err");
}

}  // namespace rollguard::testing
