// `monkeyproofd exec [options] -- CMD ARGS...`: runs one sandboxed command in
// the foreground through the same Spawn() path the daemon uses, exits with its
// status, and says why when the sandbox killed it. Runs as root in the
// supervisor binary; single-threaded.
#pragma once

namespace mp::supervisor {

// argv starts after "exec". Returns the process exit status.
int RunExecCommand(int argc, char** argv);

}  // namespace mp::supervisor
