// Compatibility with the original MonkeyProof server, in the test VM: the original (its source
// at a pinned commit, run by Bun; tests/compat/install.sh puts both into BUILD_DIR/compat on
// the host, since the guest has no network) and our stack (monkeyproofd + monkeyproof-api with
// the shipped exec policy, rewritten only for the test's workspace) run side by side, and
// tests/compat/compat.py runs the original's documented client flows against both and compares
// the answers member by member against tests/compat/differences.json.
// The original runs commands as whoever runs it: only here, as root in the throwaway guest.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e_stack.h"

namespace mp::testing {
namespace {

using std::chrono::seconds;

const std::string kSourceDir = MP_SOURCE_DIR;
const std::string kOriginalDir = MP_COMPAT_DIR;  // BUILD_DIR/compat/original
const std::string kBun = kOriginalDir + "/bin/bun";
const std::string kPython = "/usr/bin/python3";
const std::string kCompatPy = kSourceDir + "/tests/compat/compat.py";

const std::string kBase = "/var/tmp/mp-compat";
const std::string kCgroup = "/sys/fs/cgroup/mp-compat";
constexpr uint16_t kOursPort = 39321;
constexpr uint16_t kOriginalPort = 39322;

// Shipped policies the flows use, when the tree has them (file stems of policies/).
const std::vector<std::string> kShippedPolicies = {"exec", "shell"};

class CompatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto start = Clock::now();
    std::string why;
    if (!Setup(&why)) {
      std::string logs = stack_ ? stack_->Logs() : "";
      if (::access((kBase + "/original.log").c_str(), R_OK) == 0) {
        logs += "\n--- original.log (tail)\n" + Tail(kBase + "/original.log");
      }
      setup_error_ = new std::string("setup: " + why + logs);
      return;
    }
    std::printf("both servers ready in %.1f s\n", SecondsSince(start));
  }

  static bool Setup(std::string* why) {
    for (const std::string& path :
         {kBun, kOriginalDir + "/src/index.ts", kOriginalDir + "/node_modules/hono/package.json"}) {
      if (::access(path.c_str(), R_OK) != 0) {
        *why = path +
               " is missing: the original MonkeyProof server and Bun are installed on the host "
               "before the VM boots (tests/compat/install.sh BUILD_DIR; the guest has no network)";
        return false;
      }
    }
    // The original's interactive sessions are tmux sessions; without tmux it would refuse
    // them, which is not the original's documented behaviour.
    if (::access("/usr/bin/tmux", X_OK) != 0) {
      *why =
          "/usr/bin/tmux is missing: the original's interactive mode needs it "
          "(scripts/install-deps.sh installs it)";
      return false;
    }
    // The shipped policies, rewritten for the test workspace.
    std::map<std::string, std::string> policies;
    const std::string workspace = kBase + "/ws/w";  // Stack::workspace()
    for (const auto& stem : kShippedPolicies) {
      const std::string shipped = kSourceDir + "/policies/" + stem + ".json";
      if (::access(shipped.c_str(), R_OK) != 0) continue;
      const std::string out = "/run/mp-compat-" + stem + ".json";
      const int rc =
          RunToEnd({kPython, kCompatPy, "rewrite-policy", shipped, out, "--workspace", workspace},
                   {"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}, seconds(60));
      if (rc != 0) {
        *why = "compat.py rewrite-policy " + shipped + ": " + DescribeStatus(rc);
        return false;
      }
      policies[stem] = ReadFile(out);
    }
    stack_ = new Stack(StackConfig{.base = kBase,
                                   .port = kOursPort,
                                   .cgroup = kCgroup,
                                   .api_user = "mp-e2e-api",
                                   .policies = policies,
                                   .daemon_conf = "kill_grace_ms = 2000\n",
                                   .api_conf = ""});
    if (!stack_->Prepare(why)) return false;
    stack_->StartDaemon();
    stack_->StartApi();

    // The original: HOME and its working directory are the workspace, so that a session
    // without cwd, or with a relative one, lands where ours puts it.
    original_token_ = RandomHex(24);
    original_ = new Child();
    Child::Options o;
    o.argv = {"/bin/sh", "-c", "cd \"$0\" && exec \"$1\" run \"$2\"",
              workspace, kBun, kOriginalDir + "/src/index.ts"};
    o.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + workspace,
             "PORT=" + std::to_string(kOriginalPort), "AGENT_WS_TOKEN=" + original_token_};
    o.log = kBase + "/original.log";
    if (!original_->Start(o)) {
      *why = "starting " + kBun;
      return false;
    }
    const double ours = stack_->WaitReady(seconds(120));
    if (ours < 0) {
      *why = "our API never answered /readyz with 200";
      return false;
    }
    const auto start = Clock::now();
    while (HttpTo(kOriginalPort, "GET", "/health", original_token_).status != 200) {
      if (SecondsSince(start) > 120) {
        *why = "the original never answered GET /health with 200 within 120 s (Bun " + kBun +
               " did not start it?)";
        return false;
      }
      ::usleep(200 * 1000);
    }
    std::printf("ours ready after %.1f s, the original %.1f s after that\n", ours,
                SecondsSince(start));
    return true;
  }

  static void TearDownTestSuite() {
    if (original_ != nullptr) original_->Kill(SIGTERM);
    delete original_;
    original_ = nullptr;
    // The original's interactive sessions live in a tmux server of their own.
    RunToEnd({"/bin/sh", "-c", "tmux kill-server 2>/dev/null; true"},
             {"PATH=/usr/bin:/bin", "HOME=" + kBase + "/ws/w"}, seconds(20));
    if (stack_ != nullptr) {
      stack_->StopApi(SIGTERM);
      stack_->StopDaemon(SIGTERM);
    }
    delete stack_;
    stack_ = nullptr;
  }

  void SetUp() override {
    if (setup_error_ != nullptr) GTEST_FAIL() << *setup_error_;
  }

  static Stack* stack_;
  static Child* original_;
  static std::string original_token_;
  static std::string* setup_error_;
};
Stack* CompatTest::stack_ = nullptr;
Child* CompatTest::original_ = nullptr;
std::string CompatTest::original_token_;
std::string* CompatTest::setup_error_ = nullptr;

// Every flow against both servers; every difference is one listed in differences.json, and
// every listed one is still there.
TEST_F(CompatTest, DocumentedClientFlowsMatchTheOriginal) {
  const auto start = Clock::now();
  Child c;
  Child::Options o;
  o.argv = {kPython, kCompatPy, "run"};
  o.env = stack_->ScriptEnv(
      {"MP_COMPAT_OURS_URL=" + stack_->url(), "MP_COMPAT_OURS_TOKEN=" + stack_->token(),
       "MP_COMPAT_ORIGINAL_URL=http://127.0.0.1:" + std::to_string(kOriginalPort),
       "MP_COMPAT_ORIGINAL_TOKEN=" + original_token_,
       "MP_COMPAT_WORKSPACE=" + stack_->workspace()});
  ASSERT_TRUE(c.Start(o));
  const int status = c.Wait(seconds(600));
  std::printf("compat.py: %s after %.1f s\n", DescribeStatus(status).c_str(), SecondsSince(start));
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "compat.py: " << DescribeStatus(status) << " (its output above names each difference)"
      << stack_->Logs() << "\n--- original.log (tail)\n"
      << Tail(kBase + "/original.log");
}

}  // namespace
}  // namespace mp::testing
