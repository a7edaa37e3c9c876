// rollguard-webhook_sink: a webhook receiver for the demo. Listens on 127.0.0.1, writes
// its port to a file, and appends each request (method, path, body) to an output file
// until SIGTERM/SIGINT.

#include <signal.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "http_receiver.h"

namespace {
volatile sig_atomic_t g_stop = 0;
void onSignal(int) {
    g_stop = 1;
}
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Receive webhooks on 127.0.0.1 and record them."};
    std::string port_file;
    std::string out;
    std::uint16_t port = 0;
    app.add_option("--port", port, "Port (0: any free port)");
    app.add_option("--port-file", port_file, "Write the bound port here")->required();
    app.add_option("-o,--out", out, "Append received requests here")->required();
    CLI11_PARSE(app, argc, argv);

    signal(SIGTERM, onSignal);
    signal(SIGINT, onSignal);

    rollguard::testing::HttpReceiver receiver(port);
    {
        std::ofstream pf(port_file + ".tmp");
        pf << receiver.port() << "\n";
    }
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());

    std::size_t written = 0;
    while (!g_stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const auto requests = receiver.requests();
        if (requests.size() > written) {
            std::ofstream o(out, std::ios::app);
            for (; written < requests.size(); ++written) {
                const auto& r = requests[written];
                o << r.method << " " << r.target << "\n" << r.body << "\n\n";
            }
        }
    }
    return 0;
}
