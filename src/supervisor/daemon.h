// The monkeyproofd daemon: preflight (root, cgroup v2 controllers in the
// delegated subtree, state directory), then one event loop driving the
// control socket and every session until SIGTERM. Runs as root; single thread.
#pragma once

namespace mp::supervisor {

// argv after the program name, without a subcommand. Returns the exit status.
int RunDaemon(int argc, char** argv);

}  // namespace mp::supervisor
