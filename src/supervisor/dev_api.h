// Development mode's API process: `monkeyproofd --dev` starts monkeyproof-api from the build
// tree as an unprivileged user, with a freshly generated token, so that one command runs the
// whole product locally (../shared/design.md). Runs in monkeyproofd (root) at start; the
// child drops to the given uid/gid before exec and dies with the supervisor.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::supervisor {

struct DevApiOptions {
  std::string api_path;     // the monkeyproof-api binary
  std::string dir;          // the dev state directory: token and an empty config go here
  std::string socket_path;  // the control socket
  std::string listen;       // e.g. "127.0.0.1:3200"
  uid_t uid = 0;            // the API's user; never 0
  gid_t gid = 0;
};

struct DevApi {
  pid_t pid = -1;
  UniqueFd pidfd;     // readable when the API exits
  std::string token;  // 64 hex characters
  std::string token_file;
};

// Writes the token (mode 0640, root:gid) and an empty API config into options.dir, then forks
// and execs the API with --config, --listen, --control-socket and --token-file, as uid:gid
// with no supplementary groups, PR_SET_PDEATHSIG(SIGTERM) (set after the uid change, which
// would clear it: the API dies with the supervisor, even of SIGKILL) and an environment of
// PATH only.
Result<DevApi> StartDevApi(const DevApiOptions& options);

}  // namespace mp::supervisor
