// monkeyproofd entry point. Runs as root; see docs/architecture.md.
#include <cstdio>
#include <cstring>

#include "common/version.h"
#include "supervisor/check_policy_command.h"
#include "supervisor/daemon.h"
#include "supervisor/exec_command.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "exec") == 0) {
    return mp::supervisor::RunExecCommand(argc - 2, argv + 2);
  }
  if (argc >= 2 && std::strcmp(argv[1], "check-policy") == 0) {
    return mp::supervisor::RunCheckPolicyCommand(argc - 2, argv + 2);
  }
  if (argc >= 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("monkeyproofd %s\n", mp::kVersion);
    return 0;
  }
  return mp::supervisor::RunDaemon(argc - 1, argv + 1);
}
