#include "supervisor/check_policy_command.h"

#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/policy.h"

namespace mp::supervisor {
namespace {

void PrintCheckPolicyUsage(FILE* out) {
  std::fprintf(out,
               R"(usage: monkeyproofd check-policy [--require-root-owned] PATH...

Validates policy files. A PATH that is a directory is checked as monkeyproofd
loads it: every *.json in it, and an exec.json of type exec must exist.
Every problem is printed as FILE:JSON-POINTER: reason. What is valid but risky
(an agent preset on the host's network, or with a key in its environment) is
printed as FILE:JSON-POINTER: warning: reason, and does not fail the check.
Exit status: 0 when all are valid, 1 otherwise, 2 on a usage error. The field reference is
docs/policies.md.

options:
  --require-root-owned  also refuse files and directories that do not belong
                        to root or that group or others may write (as the
                        installed daemon does)
  -h, --help            this text
)");
}

}  // namespace

int RunCheckPolicyCommand(int argc, char** argv) {
  PolicyLoadOptions options;
  std::vector<std::string> paths;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      PrintCheckPolicyUsage(stdout);
      return 0;
    }
    if (a == "--require-root-owned") {
      options.require_root_owned = true;
    } else if (a.starts_with("-") && a != "-") {
      std::fprintf(stderr, "monkeyproofd check-policy: unknown option \"%s\"\n", argv[i]);
      PrintCheckPolicyUsage(stderr);
      return 2;
    } else {
      paths.emplace_back(a);
    }
  }
  if (paths.empty()) {
    std::fprintf(stderr, "monkeyproofd check-policy: no policy file given\n");
    PrintCheckPolicyUsage(stderr);
    return 2;
  }

  bool all_ok = true;
  for (const auto& path : paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      auto set = PolicySet::Load(path, options);
      if (!set) {
        all_ok = false;
        std::fprintf(stderr, "%s\n", set.error().ToString().c_str());
        continue;
      }
      std::string names;
      for (const auto& [name, policy] : set->all()) {
        names += (names.empty() ? "" : ", ") + name;
        for (const std::string& w : PolicyWarnings(*policy))
          std::fprintf(stderr, "%s\n", w.c_str());
      }
      std::printf("%s: ok (%zu %s: %s)\n", path.c_str(), set->all().size(),
                  set->all().size() == 1 ? "policy" : "policies", names.c_str());
      continue;
    }
    const PolicyLoad load = LoadPolicyFile(path, options);
    if (!load.policy) {
      all_ok = false;
      for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.c_str());
      continue;
    }
    for (const std::string& w : PolicyWarnings(*load.policy))
      std::fprintf(stderr, "%s\n", w.c_str());
    std::printf("%s: ok (policy \"%s\", type %s)\n", path.c_str(), load.policy->name.c_str(),
                std::string(ToString(load.policy->type)).c_str());
  }
  return all_ok ? 0 : 1;
}

}  // namespace mp::supervisor
