// libFuzzer target for the policy loader (supervisor/policy.h, ParsePolicy): the whole input is
// one policies/*.json file (JSON with comments). Besides "no crash, no sanitizer report", it
// checks the loader's contract and aborts when it fails: a policy or a list of errors, never
// both and never neither, and every error names the file ("FILE:POINTER: reason"). Nothing is
// read from disk. Built with -fsanitize=fuzzer under the `fuzz` preset; the normal build links
// it with replay_main.cc to replay tests/fuzz/corpus/policy (fuzz_replay.policy).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "supervisor/policy.h"

namespace {

constexpr std::string_view kFile = "/fuzz/f.json";

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "policy_fuzz: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Die(what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const mp::supervisor::PolicyLoad load = mp::supervisor::ParsePolicy(kFile, text);
  Check((load.policy != nullptr) != !load.errors.empty(), "a policy and errors, or neither");
  for (const std::string& e : load.errors) {
    if (e.rfind(std::string(kFile) + ":", 0) != 0) {
      std::fprintf(stderr, "policy_fuzz: error: %s\n", e.c_str());
      Die("an error that does not name the file");
    }
  }
  return 0;
}
