// The real coding-agent CLIs in the sandbox, end to end in the test VM: Codex, Claude Code,
// Gemini CLI and OpenCode at their pinned versions (tests/agents/versions.json, installed
// into BUILD_DIR/agents by tests/agents/install.sh before the VM boots) run under their
// presets' policies (policies/*.json, rewritten only where a test host differs: workspace,
// state dir, binary path, the gateway's upstream) through the real monkeyproofd,
// monkeyproof-api and monkeyproof-egress, against a stub of the model APIs on the VM's
// loopback (tests/agents/stub_model.py, HTTPS with a test CA, named stub-model.mp-test in the
// VM's /etc/hosts). Every preset's network is "allowlist" with the credential gateway: the
// session has a network namespace of its own, so the gateway is its only way to the stub, and
// the API keys stay in root-owned credential files the supervisor reads and hands to the
// egress daemon. A probe under each preset finds no key in the session (control: the key in
// the environment, as before the gateway). Also the recipes of docs/recipes.md
// (tests/e2e/recipes.sh).
#include <dirent.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e_stack.h"

namespace mp::testing {
namespace {

using std::chrono::seconds;

const std::string kSourceDir = MP_SOURCE_DIR;
const std::string kAgentsDir = MP_AGENTS_DIR;  // BUILD_DIR/agents
const std::string kCliBin = MP_CLI_PATH;
const std::string kEgress = MP_EGRESS_PATH;
const std::string kPython = "/usr/bin/python3";

const std::string kBase = "/var/tmp/mp-agent-e2e";
const std::string kCgroup = "/sys/fs/cgroup/mp-agent-e2e";
const std::string kSessionUser = "monkeyproof-session";  // run_as.user of every agent preset
constexpr uint16_t kPort = 39301;
constexpr uint16_t kStubPort = 39302;
// The stub model as the gateway's upstream: HTTPS under a name of the VM's /etc/hosts, with a
// certificate the egress daemon trusts through --upstream-ca (tests only).
const std::string kStubHost = "stub-model.mp-test";
const std::string kStubOrigin = "https://" + kStubHost + ":" + std::to_string(kStubPort);
const std::string kHandover = kBase + "/egress/handover.sock";
constexpr uid_t kEgressUid = 65533;  // monkeyproof-egress's unprivileged uid in the VM
// The credentials the presets name in env.secrets; the guest's /etc is a throwaway overlay.
const std::string kCredentialsDir = "/etc/monkeyproof/credentials";
const std::string kOpenAiKeyFile = kCredentialsDir + "/openai-api-key";
const std::string kAnthropicKeyFile = kCredentialsDir + "/anthropic-api-key";
const std::string kGeminiKeyFile = kCredentialsDir + "/gemini-api-key";
// OpenCode's model in its config file: a model of its catalogue, not the one it would pick.
constexpr const char* kOpenCodeModel = "anthropic/claude-haiku-4-5";

// Where the sessions find the CLIs: the build tree's agents dir bound at a fixed path, since a
// build tree under /tmp (a CI clone, say) is covered by every sandbox's private /tmp.
const std::string kSandboxAgentsDir = "/var/lib/mp-e2e-agents";

std::string AgentBin(const std::string& name, const std::string& dir = kAgentsDir) {
  return dir + "/" + name + "/node_modules/.bin/" + name;
}

// The lines of the stub's request log that contain every one of `needles`.
int CountStubRequests(const std::vector<std::string>& needles) {
  std::istringstream log(ReadFile(kBase + "/stub-requests.jsonl"));
  int n = 0;
  for (std::string line; std::getline(log, line);) {
    bool all = true;
    for (const auto& needle : needles) all = all && line.find(needle) != std::string::npos;
    n += all ? 1 : 0;
  }
  return n;
}

// Processes of `uid` still running.
std::vector<std::string> ProcessesOf(uid_t uid) {
  std::vector<std::string> out;
  DIR* d = ::opendir("/proc");
  while (const dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || st.st_uid != uid) continue;
    std::string cmdline = ReadFile(dir + "/cmdline");
    for (char& c : cmdline) c = c == '\0' ? ' ' : c;
    out.push_back(std::string(e->d_name) + " " + cmdline);
  }
  if (d) ::closedir(d);
  return out;
}

bool MakeDir(const std::string& path, mode_t mode, uid_t uid, gid_t gid, std::string* why) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    *why = "mkdir " + path + ": " + std::strerror(errno);
    return false;
  }
  if (::chown(path.c_str(), uid, gid) != 0 || ::chmod(path.c_str(), mode) != 0) {
    *why = "chown/chmod " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool WriteOwned(const std::string& path, const std::string& text, mode_t mode, uid_t uid, gid_t gid,
                std::string* why) {
  WriteFile(path, text);
  if (::chown(path.c_str(), uid, gid) != 0 || ::chmod(path.c_str(), mode) != 0) {
    *why = "chown/chmod " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

class AgentE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto start = Clock::now();
    std::string why;
    if (!Setup(&why)) {
      setup_error_ = new std::string("setup: " + why + (stack_ ? stack_->Logs() : ""));
      return;
    }
    std::printf("stack and stub model ready in %.1f s\n", SecondsSince(start));
  }

  static bool Setup(std::string* why) {
    for (const char* cli : {"codex", "claude", "gemini", "opencode"}) {
      if (::access(AgentBin(cli).c_str(), X_OK) != 0) {
        *why = AgentBin(cli) +
               " is missing: install the pinned CLIs on the host before the VM boots "
               "(tests/agents/install.sh BUILD_DIR; the guest has no network)";
        return false;
      }
    }
    if (::mkdir(kSandboxAgentsDir.c_str(), 0755) != 0 && errno != EEXIST) {
      *why = "mkdir " + kSandboxAgentsDir + ": " + std::strerror(errno);
      return false;
    }
    if (::mount(kAgentsDir.c_str(), kSandboxAgentsDir.c_str(), nullptr, MS_BIND | MS_REC,
                nullptr) != 0) {
      *why = "bind " + kAgentsDir + " at " + kSandboxAgentsDir + ": " + std::strerror(errno);
      return false;
    }
    const auto session = EnsureAccount(kSessionUser, false, why);
    if (!session) return false;
    session_uid_ = session->uid;
    std::printf("session user: %s uid=%u (%s)\n", session->name.c_str(), session->uid,
                session->how.c_str());
    stack_ = new Stack(
        StackConfig{.base = kBase,
                    .port = kPort,
                    .cgroup = kCgroup,
                    .api_user = "mp-e2e-api",
                    .policies = {},
                    // The shipped default session_host_loopback = deny stays:
                    // the agents reach the stub through the gateway only.
                    .daemon_conf = "kill_grace_ms = 2000\negress_socket = " + kHandover + "\n",
                    .api_conf = ""});
    if (!stack_->Prepare(why)) return false;
    const uid_t u = session->uid;
    const gid_t g = session->gid;
    // The workspaces and the agents' state dirs belong to the session user, as on a host.
    for (const std::string dir :
         {"/ws/codex", "/ws/claude", "/ws/claude-interactive", "/ws/gemini", "/ws/opencode",
          "/ws/recipes", "/ws/recipes-cli", "/agents", "/agents/codex", "/agents/claude",
          "/agents/gemini", "/agents/gemini/.gemini", "/agents/opencode",
          "/agents/opencode/.config", "/agents/opencode/.config/opencode"}) {
      if (!MakeDir(kBase + dir, dir == "/agents" ? 0755 : 0700, dir == "/agents" ? 0 : u,
                   dir == "/agents" ? 0 : g, why)) {
        return false;
      }
    }
    // Codex's model, from its config.toml (CODEX_HOME is the state dir): the stub's, whose
    // tools Codex offers in the form the stub answers (its default model's differ). The
    // provider is the preset's own (its command line: the gateway's endpoint).
    if (!WriteOwned(kBase + "/agents/codex/config.toml",
                    "# Written by agent_e2e_test: the stub's model.\nmodel = \"stub-model\"\n",
                    0600, u, g, why)) {
      return false;
    }
    // Gemini CLI in headless mode takes the auth type from GOOGLE_GEMINI_BASE_URL before
    // GEMINI_API_KEY ("gateway") and then refuses it ("Invalid auth method selected.", exit
    // 41) unless its settings select the API key. No usage statistics: they would go to Google.
    if (!WriteOwned(kBase + "/agents/gemini/.gemini/settings.json",
                    R"({"security": {"auth": {"selectedType": "gemini-api-key"}},)"
                    R"( "privacy": {"usageStatisticsEnabled": false}})"
                    "\n",
                    0600, u, g, why)) {
      return false;
    }
    // OpenCode's default model, from its config in the state dir (XDG_CONFIG_HOME/opencode).
    // Without it, OpenCode picks a model of whichever provider has a key.
    if (!WriteOwned(kBase + "/agents/opencode/.config/opencode/opencode.json",
                    R"({"model": ")" + std::string(kOpenCodeModel) + "\"}\n", 0600, u, g, why)) {
      return false;
    }
    // The keys, root-owned as docs/policies.md ("Secrets") demands.
    openai_key_ = "sk-stub-openai-" + RandomHex(16);
    anthropic_key_ = "sk-ant-stub-" + RandomHex(16);
    gemini_key_ = "stub-gemini-" + RandomHex(16);
    if (std::system(("mkdir -p " + kCredentialsDir).c_str()) != 0 ||
        !MakeDir("/etc/monkeyproof", 0755, 0, 0, why) ||
        !MakeDir(kCredentialsDir, 0700, 0, 0, why) ||
        !WriteOwned(kOpenAiKeyFile, openai_key_ + "\n", 0600, 0, 0, why) ||
        !WriteOwned(kAnthropicKeyFile, anthropic_key_ + "\n", 0600, 0, 0, why) ||
        !WriteOwned(kGeminiKeyFile, gemini_key_ + "\n", 0600, 0, 0, why)) {
      return false;
    }
    // The test policies, derived from the real presets.
    struct Preset {
      std::string name, cli;          // the preset, and its CLI (or the probe policy's name)
      std::vector<std::string> args;  // more for test_policy.py
    };
    // The probe (tests/agents/key_probe.sh) where sessions can run it.
    const std::string probe_dir = kBase + "/probe";
    if (!MakeDir(probe_dir, 0755, 0, 0, why) ||
        std::system(("install -m 0755 " + kSourceDir + "/tests/agents/key_probe.sh " + probe_dir +
                     "/key_probe.sh")
                        .c_str()) != 0) {
      *why = "cannot install the key probe in " + probe_dir;
      return false;
    }
    const std::vector<std::string> probe = {"--bin", probe_dir + "/key_probe.sh", "--mount",
                                            probe_dir};
    auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
      a.insert(a.end(), b.begin(), b.end());
      return a;
    };
    for (const Preset& p :
         {Preset{"codex-worker", "codex", {}}, Preset{"claude", "claude", {}},
          Preset{"claude-interactive", "claude", {}}, Preset{"codex-interactive", "codex", {}},
          Preset{"gemini", "gemini", {}}, Preset{"opencode", "opencode", {}},
          // The probes: each preset as it is, with the probe for its command.
          Preset{"claude", "probe-claude", probe}, Preset{"codex-worker", "probe-codex", probe},
          Preset{"gemini", "probe-gemini", probe}, Preset{"opencode", "probe-opencode", probe},
          // The control: the key in the environment instead of the gateway.
          Preset{"claude", "probe-keyinenv",
                 with(probe, {"--key-in-env", "ANTHROPIC_API_KEY=anthropic-api-key"})}}) {
      const bool probing = p.cli.rfind("probe-", 0) == 0;
      const std::string out = probing ? p.cli : p.name;
      std::vector<std::string> argv = {kPython,
                                       kSourceDir + "/tests/agents/test_policy.py",
                                       kSourceDir + "/policies/" + p.name + ".json",
                                       stack_->policies_dir() + "/" + out + ".json",
                                       "--workspace",
                                       stack_->workspace(),
                                       "--state-base",
                                       kBase + "/agents",
                                       "--gateway-upstream",
                                       kStubOrigin,
                                       "--mount",
                                       kSandboxAgentsDir};
      if (!probing) {
        argv.insert(argv.end(), {"--bin", AgentBin(p.cli, kSandboxAgentsDir)});
      }
      argv.insert(argv.end(), p.args.begin(), p.args.end());
      const int rc = RunToEnd(argv, {"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}, seconds(60));
      if (rc != 0) {
        *why = "test_policy.py " + p.name + ": " + DescribeStatus(rc);
        return false;
      }
    }
    // The exec preset for the recipes' plain commands.
    WriteFile(stack_->policies_dir() + "/exec.json",
              R"({"description": "recipes exec", "type": "exec", "command": [],
                  "run_as": {"user": "nobody"},
                  "workspace_roots": [")" +
                  stack_->workspace_root() + R"("],
                  "default_workspace": ")" +
                  stack_->workspace() + R"(",
                  "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}}})");
    // The stub's name and certificate (the VM's /etc is a throwaway overlay).
    const std::string cert = kBase + "/stub-cert.pem";
    const std::string key = kBase + "/stub-key.pem";
    if (std::system(("grep -q ' " + kStubHost + "$' /etc/hosts || echo '127.0.0.1 " + kStubHost +
                     "' >> /etc/hosts")
                        .c_str()) != 0 ||
        std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                     "-days 1 -subj /CN=" +
                     kStubHost + " -addext subjectAltName=DNS:" + kStubHost + " -keyout " + key +
                     " -out " + cert + " 2>/dev/null")
                        .c_str()) != 0 ||
        ::chmod(cert.c_str(), 0644) != 0) {
      *why = "cannot name the stub model in /etc/hosts or make its certificate";
      return false;
    }
    stub_ = new Child();
    Child::Options o;
    o.argv = {kPython,        kSourceDir + "/tests/agents/stub_model.py",
              "--port",       std::to_string(kStubPort),
              "--log",        kBase + "/stub-requests.jsonl",
              "--expect-key", openai_key_,
              "--expect-key", anthropic_key_,
              "--expect-key", gemini_key_,
              "--tls-cert",   cert,
              "--tls-key",    key};
    o.env = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1"};
    o.log = kBase + "/stub.log";
    if (!stub_->Start(o)) {
      *why = "cannot start the stub model";
      return false;
    }
    // monkeyproof-egress as the package runs it (its own unprivileged uid), allowed to reach
    // the stub on the VM's loopback (a test-only option) and to trust its certificate.
    WriteFile(kBase + "/egress.conf", "socket = " + kHandover + "\n");
    if (!MakeDir(kBase + "/egress", 0755, kEgressUid, kEgressUid, why)) return false;
    egress_ = new Child();
    Child::Options e;
    e.argv = {"setpriv",
              "--reuid=" + std::to_string(kEgressUid),
              "--regid=" + std::to_string(kEgressUid),
              "--clear-groups",
              "--",
              kEgress,
              "--config",
              kBase + "/egress.conf",
              "--unsafe-test-private-upstream",
              "127.0.0.1:" + std::to_string(kStubPort),
              "--upstream-ca",
              cert};
    e.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
    e.log = kBase + "/egress.log";
    if (!egress_->Start(e)) {
      *why = "cannot start monkeyproof-egress";
      return false;
    }
    stack_->StartDaemon();
    stack_->StartApi();
    const double ready = stack_->WaitReady(seconds(120));
    if (ready < 0) {
      *why = "the API never answered /readyz with 200";
      return false;
    }
    // Python starts slowly under emulation.
    const std::string probe_stub =
        "curl -sf -o /dev/null -m 5 --cacert " + cert + " " + kStubOrigin + "/v1/models";
    const auto stub_start = Clock::now();
    while (std::system(probe_stub.c_str()) != 0 && SecondsSince(stub_start) < 60) {
      ::usleep(200 * 1000);
    }
    if (std::system(probe_stub.c_str()) != 0) {
      *why = "the stub model does not answer on " + kStubOrigin + ":\n" + Tail(kBase + "/stub.log");
      return false;
    }
    if (ReadFile(kBase + "/egress.log").find("event=listening") == std::string::npos) {
      *why = "monkeyproof-egress is not listening:\n" + Tail(kBase + "/egress.log");
      return false;
    }
    return true;
  }

  static void TearDownTestSuite() {
    if (stack_ != nullptr) {
      stack_->StopApi(SIGTERM);
      stack_->StopDaemon(SIGTERM);
    }
    delete stub_;
    delete egress_;
    delete stack_;
    stub_ = nullptr;
    egress_ = nullptr;
    stack_ = nullptr;
  }

  void SetUp() override {
    if (setup_error_ != nullptr) GTEST_FAIL() << *setup_error_;
  }

  // Runs a script and expects exit status 0; returns its seconds.
  static double RunScript(const std::vector<std::string>& argv, seconds limit) {
    const auto start = Clock::now();
    const int status = RunToEnd(argv, stack_->ScriptEnv({"MP_CLI=" + kCliBin}), limit);
    const double took = SecondsSince(start);
    std::string name;
    for (size_t i = 1; i < argv.size() && i < 3; ++i) {
      name += (i == 1 ? argv[i].substr(argv[i].rfind('/') + 1) : " " + argv[i]);
    }
    std::printf("%s: %s after %.1f s\n", name.c_str(), DescribeStatus(status).c_str(), took);
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << name << ": " << DescribeStatus(status) << " (its output above says why)" << Logs();
    return took;
  }

  static std::string Logs() {
    return stack_->Logs() + "\n--- stub model log:\n" + Tail(kBase + "/stub.log") +
           "\n--- monkeyproof-egress log:\n" + Tail(kBase + "/egress.log");
  }

  // The owner of a file the agent wrote: the session user, not root.
  static void ExpectWrittenBySession(const std::string& path) {
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path << " was not written" << Logs();
    EXPECT_EQ(st.st_uid, session_uid_) << path << " belongs to uid " << st.st_uid;
  }

  static Stack* stack_;
  static Child* stub_;
  static Child* egress_;
  static std::string* setup_error_;
  static uid_t session_uid_;
  static std::string openai_key_;
  static std::string anthropic_key_;
  static std::string gemini_key_;
};
Stack* AgentE2eTest::stack_ = nullptr;
Child* AgentE2eTest::stub_ = nullptr;
Child* AgentE2eTest::egress_ = nullptr;
std::string* AgentE2eTest::setup_error_ = nullptr;
uid_t AgentE2eTest::session_uid_ = 0;
std::string AgentE2eTest::openai_key_;
std::string AgentE2eTest::anthropic_key_;
std::string AgentE2eTest::gemini_key_;

// codex-worker: `codex exec --json …` writes a file through its tool and exits 0. stdin is
// closed first: `codex exec` reads a piped stdin to its end before it starts.
TEST_F(AgentE2eTest, CodexWorkerEditsTheWorkspace) {
  const std::string file = kBase + "/ws/codex/hello.txt";
  const double took = RunScript(
      {kPython, kSourceDir + "/tests/e2e/agent_session.py", "oneshot", "--preset", "codex-worker",
       "--cwd", kBase + "/ws/codex", "--file", file, "--content", "written by codex in the sandbox",
       "--close-stdin", "--expect", "Done: the file is written.", "--expect",
       R"("type":"turn.completed")", "--secret-file", kOpenAiKeyFile},
      seconds(900));
  ExpectWrittenBySession(file);
  // The tool call that wrote the file, then the final answer; both authenticated with the
  // credential file's key (the stub refuses others).
  EXPECT_EQ(CountStubRequests({"/v1/responses", "\"answer\": ", file}), 1) << Logs();
  EXPECT_GE(CountStubRequests({"/v1/responses", "\"status\": 200"}), 2) << Logs();
  EXPECT_EQ(CountStubRequests({"\"status\": 401"}), 0) << Logs();
  std::printf("codex-worker run: %.1f s\n", took);
}

// claude: `claude --print --permission-mode bypassPermissions …` writes a file with its Write
// tool and exits 0 (stdin stays open: Claude Code stops waiting for it after 3 s).
TEST_F(AgentE2eTest, ClaudeEditsTheWorkspace) {
  const std::string file = kBase + "/ws/claude/hello.txt";
  const double took = RunScript({kPython, kSourceDir + "/tests/e2e/agent_session.py", "oneshot",
                                 "--preset", "claude", "--cwd", kBase + "/ws/claude", "--file",
                                 file, "--content", "written by claude in the sandbox", "--expect",
                                 "Done: the file is written.", "--secret-file", kAnthropicKeyFile},
                                seconds(900));
  ExpectWrittenBySession(file);
  EXPECT_EQ(CountStubRequests({"/v1/messages", "\"answer\": \"Write " + file}), 1) << Logs();
  EXPECT_EQ(CountStubRequests({"\"status\": 401"}), 0) << Logs();
  std::printf("claude run: %.1f s\n", took);
}

// gemini: `gemini --approval-mode yolo --skip-trust --output-format text --prompt …` writes a
// file with its write_file tool and exits 0 (stdin stays open: Gemini CLI stops waiting for
// piped input after half a second). Besides the two turns it asks its model router
// (generateContent with a JSON schema), which the stub answers too.
TEST_F(AgentE2eTest, GeminiEditsTheWorkspace) {
  const std::string file = kBase + "/ws/gemini/hello.txt";
  const double took = RunScript({kPython, kSourceDir + "/tests/e2e/agent_session.py", "oneshot",
                                 "--preset", "gemini", "--cwd", kBase + "/ws/gemini", "--file",
                                 file, "--content", "written by gemini in the sandbox", "--expect",
                                 "Done: the file is written.", "--secret-file", kGeminiKeyFile},
                                seconds(900));
  ExpectWrittenBySession(file);
  EXPECT_EQ(
      CountStubRequests({":streamGenerateContent?alt=sse", "\"answer\": \"write_file " + file}), 1)
      << Logs();
  EXPECT_GE(CountStubRequests(
                {":streamGenerateContent?alt=sse", "\"answer\": \"text\"", "\"status\": 200"}),
            1)
      << Logs();
  EXPECT_EQ(CountStubRequests({"\"status\": 401"}), 0) << Logs();
  std::printf("gemini run: %.1f s\n", took);
}

// opencode: `opencode run --auto …` writes a file with its write tool, with the model of its
// config file, and exits 0. stdin is closed first: `opencode run` reads a piped stdin to its
// end before it starts.
TEST_F(AgentE2eTest, OpenCodeEditsTheWorkspace) {
  const std::string file = kBase + "/ws/opencode/hello.txt";
  const double took =
      RunScript({kPython, kSourceDir + "/tests/e2e/agent_session.py", "oneshot", "--preset",
                 "opencode", "--cwd", kBase + "/ws/opencode", "--file", file, "--content",
                 "written by opencode in the sandbox", "--close-stdin", "--expect",
                 "Done: the file is written.", "--secret-file", kAnthropicKeyFile},
                seconds(900));
  ExpectWrittenBySession(file);
  const std::string model = std::string(kOpenCodeModel).substr(std::string("anthropic/").size());
  EXPECT_EQ(CountStubRequests(
                {"/v1/messages", "\"answer\": \"write " + file, "\"model\": \"" + model + "\""}),
            1)
      << Logs();
  EXPECT_EQ(CountStubRequests({"\"status\": 401"}), 0) << Logs();
  std::printf("opencode run: %.1f s\n", took);
}

// No key inside any agent preset's session: a probe run under each preset (its policy with the
// probe for its command) reads every process environment and every file it can and finds no
// API key, while the agents above authenticate with the real ones through the gateway.
// Control: the same probe under the claude preset with the key in its environment (the way
// before the gateway) finds it.
TEST_F(AgentE2eTest, NoKeyInsideAnAgentSession) {
  const std::vector<std::string> keys = {"--secret-file",   kOpenAiKeyFile,  "--secret-file",
                                         kAnthropicKeyFile, "--secret-file", kGeminiKeyFile};
  for (const char* preset : {"probe-claude", "probe-codex", "probe-gemini", "probe-opencode"}) {
    std::vector<std::string> argv = {kPython,
                                     kSourceDir + "/tests/e2e/agent_session.py",
                                     "probe",
                                     "--preset",
                                     preset,
                                     "--cwd",
                                     kBase + "/ws/recipes",
                                     "--expect-clean"};
    argv.insert(argv.end(), keys.begin(), keys.end());
    RunScript(argv, seconds(300));
  }
  RunScript({kPython, kSourceDir + "/tests/e2e/agent_session.py", "probe", "--preset",
             "probe-keyinenv", "--cwd", kBase + "/ws/recipes", "--expect-key-in-env"},
            seconds(300));
}

// claude-interactive on a PTY: started, killed through the API once it drew its first
// screen, then inspected; nothing of it keeps running.
TEST_F(AgentE2eTest, ClaudeInteractiveKilledAndInspected) {
  RunScript({kPython, kSourceDir + "/tests/e2e/agent_session.py", "interactive", "--preset",
             "claude-interactive", "--cwd", kBase + "/ws/claude-interactive"},
            seconds(900));
  std::vector<std::string> left;
  const auto deadline = Clock::now() + seconds(10);
  do {
    left = ProcessesOf(session_uid_);
    if (left.empty()) break;
    ::usleep(100 * 1000);
  } while (Clock::now() < deadline);
  EXPECT_TRUE(left.empty()) << "processes of " << kSessionUser << " left running:\n" << Join(left);
}

// docs/recipes.md, command by command, with curl and with the CLI.
TEST_F(AgentE2eTest, Recipes) {
  ASSERT_FALSE(kCliBin.empty()) << "the monkeyproof CLI target is not in this build";
  RunScript({"bash", kSourceDir + "/tests/e2e/recipes.sh"}, seconds(1500));
}

}  // namespace
}  // namespace mp::testing
