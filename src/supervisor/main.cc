// monkeyproofd entry point. Runs as root; see docs/architecture.md.
#include <cstdio>
#include <cstring>

#include "common/version.h"

namespace {

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "usage: monkeyproofd [--version] [--help]\n"
               "\n"
               "The MonkeyProof supervisor. The session daemon, `exec` and `--dev` are\n"
               "not built yet in this version; see README.md for the state of the work.\n");
}

}  // namespace

int main(int argc, char** argv) {
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
