// Runs one raftkv node until SIGINT/SIGTERM: storage, Raft, the doors, on one io_context.
#pragma once

#include <optional>
#include <string>

#include "app/config.h"

namespace app {

// What `check-config` adds to the parse: builds the TLS contexts the config names, as a start
// and a SIGHUP reload do (PEM files, a key that matches its certificate, a peer certificate
// that names this node), and logs a certificate that expires within 14 days or has expired.
// Returns the one-line reason when a file does not load (exit 2).
std::optional<std::string> check_tls(const config& c);

// Returns the process exit code: 0 clean shutdown, 1 fatal runtime error.
int run_server(const config& c);

}  // namespace app
