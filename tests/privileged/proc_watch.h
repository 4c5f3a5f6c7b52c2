// What the privileged tests look at from outside a session: the processes of a cgroup leaf
// (host pids from its cgroup.procs), their command lines and parentage from /proc, and a
// poll-until-true helper so that tests wait on a condition instead of sleeping.
// Runs in the test process, as root in the test VM. Not thread-safe (plain functions over /proc).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mp::testing {

// Polls `condition` every 20 ms until it holds (true) or `limit` has passed (false). The limit
// is a hang guard, not a measurement: pick it generously.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds limit);

// The whole file, or nullopt when it cannot be opened or read. Plain read(2): a /proc file
// whose process exits between open and read fails with ESRCH, which libstdc++'s filebuf turns
// into an exception whatever the stream's exception mask.
std::optional<std::string> ReadWholeFile(const std::string& path);

// The pids in `leaf_dir`/cgroup.procs; nullopt when the file cannot be read (the leaf is gone).
std::optional<std::vector<pid_t>> LeafProcesses(const std::string& leaf_dir);

// /proc/PID/cmdline with the NULs turned into spaces and the last one dropped ("sleep 1000");
// empty when the process is gone.
std::string Cmdline(pid_t pid);

// Fields of /proc/PID/stat (proc(5)); nullopt when the process is gone.
struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
  pid_t session = 0;
};
std::optional<ProcStat> ReadProcStat(pid_t pid);

// The first pid of `pids` whose command line is exactly `cmdline`; 0 when none.
pid_t FindByCmdline(const std::vector<pid_t>& pids, const std::string& cmdline);

}  // namespace mp::testing
