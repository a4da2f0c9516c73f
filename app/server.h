// Runs one raftkv node until SIGINT/SIGTERM: storage, Raft, the doors, on one io_context.
#pragma once

#include "app/config.h"

namespace app {

// Returns the process exit code: 0 clean shutdown, 1 fatal runtime error.
int run_server(const config& c);

}  // namespace app
