// monkeyproofd entry point. Runs as root; see docs/architecture.md.
#include <cstdio>
#include <cstring>

#include "common/version.h"
#include "supervisor/check_policy_command.h"
#include "supervisor/exec_command.h"

namespace {

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "usage: monkeyproofd exec [options] -- CMD [ARGS...]   run one sandboxed command\n"
               "       monkeyproofd --version | --help\n"
               "\n"
               "The MonkeyProof supervisor. `monkeyproofd exec --help` lists the sandbox\n"
               "options. The session daemon and --dev are not built yet in this version.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "exec") == 0) {
    return mp::supervisor::RunExecCommand(argc - 2, argv + 2);
  }
  if (argc >= 2 && std::strcmp(argv[1], "check-policy") == 0) {
    return mp::supervisor::RunCheckPolicyCommand(argc - 2, argv + 2);
  }
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("monkeyproofd %s\n", mp::kVersion);
      return 0;
    }
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      PrintUsage(stdout);
      return 0;
    }
    std::fprintf(stderr, "monkeyproofd: unknown argument '%s'\n", argv[i]);
    PrintUsage(stderr);
    return 2;
  }
  PrintUsage(stderr);
  return 2;
}
