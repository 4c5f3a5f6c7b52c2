// `monkeyproofd check-policy`: the built binary run on policy files and directories in a
// mkdtemp directory under /tmp, checking its exit status (0 valid, 1 invalid, 2 usage) and
// what it prints on stdout and stderr. Runs as any user (as root too: the ownership case uses
// a world-writable file, which is refused either way).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/mp-check-policy-test-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string Write(const std::string& name, const std::string& text, mode_t mode = 0644) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::trunc) << text;
    EXPECT_EQ(::chmod(p.c_str(), mode), 0) << p;
    return p;
  }
  std::string Mkdir(const std::string& name) const {
    const std::string p = path_ + "/" + name;
    EXPECT_EQ(::mkdir(p.c_str(), 0755), 0) << p;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

struct Outcome {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string out;
  std::string err;
};

// Runs `monkeyproofd check-policy ARGS...` with stdout and stderr in files of `dir`.
Outcome CheckPolicy(const TempDir& dir, const std::vector<std::string>& args) {
  const std::string out_path = dir.path() + "/.stdout";
  const std::string err_path = dir.path() + "/.stderr";
  std::vector<std::string> argv_s = {MP_MONKEYPROOFD, "check-policy"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(127);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  Outcome o;
  int wstatus = 0;
  EXPECT_EQ(::waitpid(pid, &wstatus, 0), pid);
  if (WIFEXITED(wstatus)) o.status = WEXITSTATUS(wstatus);
  o.out = Slurp(out_path);
  o.err = Slurp(err_path);
  return o;
}

// A valid policy: an exec session as `nobody` under /srv/ws.
std::string Doc(const std::string& extra = "", const std::string& type = "exec") {
  return R"({"description": "d", "type": ")" + type +
         R"(", "run_as": {"user": "nobody"}, "workspace_roots": ["/srv/ws"])" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

const std::string kPrintDoc =
    Doc(R"("command": ["agent", "--print"], "bypasses_agent_permissions": false)", "print");

TEST(CheckPolicyTest, AValidFile) {
  TempDir dir;
  const std::string path = dir.Write("shell.json", "// a comment\n" + Doc());
  const Outcome o = CheckPolicy(dir, {path});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, path + ": ok (policy \"shell\", type exec)\n");
  EXPECT_EQ(o.err, "");
}

// Valid but risky: an agent preset on the host's network, or with its key in its environment.
// Said on stderr; the check passes. Control: the same preset under allowlist, without the
// secret, gets no warning.
TEST(CheckPolicyTest, AnAgentPresetOnTheHostNetworkIsWarnedAbout) {
  TempDir dir;
  const std::string agent =
      R"("command": ["agent", "--print"], "bypasses_agent_permissions": true)";
  const std::string risky = dir.Write(
      "risky.json",
      Doc(agent + R"(, "network": "host", "env": {"secrets": {"API_KEY": "api-key"}})", "print"));
  Outcome o = CheckPolicy(dir, {risky});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, risky + ": ok (policy \"risky\", type print)\n");
  std::istringstream lines(o.err);
  std::vector<std::string> warnings;
  for (std::string line; std::getline(lines, line);) warnings.push_back(line);
  ASSERT_EQ(warnings.size(), 2u) << o.err;
  EXPECT_EQ(warnings[0].rfind(risky + ":/network: warning: ", 0), 0u) << warnings[0];
  EXPECT_EQ(warnings[1].rfind(risky + ":/env/secrets: warning: ", 0), 0u) << warnings[1];

  const std::string contained = dir.Write(
      "contained.json", Doc(agent + R"(, "network": {"mode": "allowlist", "allow": [], "gateway": [
            {"base_url_env": "API_BASE_URL", "upstream": "https://api.example.com",
             "auth": {"header": "x-api-key", "secret": "api-key"}}]})",
                            "print"));
  o = CheckPolicy(dir, {contained});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.err, "");
}

TEST(CheckPolicyTest, EveryProblemOfABadFileIsListed) {
  TempDir dir;
  const std::string path =
      dir.Write("bad.json", Doc(R"("bogus": 1, "limits": {"pids_max": "many"})", "sometimes"));
  const Outcome o = CheckPolicy(dir, {path});
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.out, "");
  // One line per problem, each "FILE:POINTER: reason".
  std::istringstream lines(o.err);
  std::vector<std::string> errors;
  for (std::string line; std::getline(lines, line);) errors.push_back(line);
  ASSERT_EQ(errors.size(), 3u) << o.err;
  for (const std::string& e : errors) EXPECT_EQ(e.rfind(path + ":/", 0), 0u) << e;
  EXPECT_NE(o.err.find(path + ":/bogus: unknown field"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find(path + ":/type: "), std::string::npos) << o.err;
  EXPECT_NE(o.err.find(path + ":/limits/pids_max: "), std::string::npos) << o.err;
}

TEST(CheckPolicyTest, NotJsonMissingAndNotAFile) {
  TempDir dir;
  const std::string broken = dir.Write("broken.json", "{\"type\": ");
  Outcome o = CheckPolicy(dir, {broken});
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.err.rfind(broken + ":", 0), 0u) << o.err;

  const std::string missing = dir.path() + "/missing.json";
  o = CheckPolicy(dir, {missing});
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.err, missing + ": open(policy file \"" + missing +
                       "\"): ENOENT (No such file or directory)\n");
}

TEST(CheckPolicyTest, OneBadPathFailsTheRunButEveryPathIsChecked) {
  TempDir dir;
  const std::string good = dir.Write("good.json", Doc());
  const std::string bad = dir.Write("bad.json", Doc(R"("bogus": 1)"));
  const Outcome o = CheckPolicy(dir, {bad, good});
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.out, good + ": ok (policy \"good\", type exec)\n");
  EXPECT_EQ(o.err.rfind(bad + ":/bogus: unknown field", 0), 0u) << o.err;
}

TEST(CheckPolicyTest, DirectoriesAsTheDaemonLoadsThem) {
  TempDir dir;
  const std::string ok = dir.Mkdir("ok");
  dir.Write("ok/exec.json", Doc());
  dir.Write("ok/print.json", kPrintDoc);
  dir.Write("ok/README", "not a policy: ignored");
  Outcome o = CheckPolicy(dir, {ok});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, ok + ": ok (2 policies: exec, print)\n");

  const std::string no_exec = dir.Mkdir("no-exec");
  dir.Write("no-exec/print.json", kPrintDoc);
  o = CheckPolicy(dir, {no_exec});
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.err.find(no_exec + ": no exec.json"), std::string::npos) << o.err;
  EXPECT_EQ(o.out, "");
}

TEST(CheckPolicyTest, RequireRootOwnedRefusesAWritableFile) {
  TempDir dir;
  const std::string loose = dir.Write("loose.json", Doc(), 0666);
  EXPECT_EQ(CheckPolicy(dir, {loose}).status, 0);
  const Outcome o = CheckPolicy(dir, {"--require-root-owned", loose});
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.err.rfind(loose + ": policy file \"" + loose + "\"", 0), 0u) << o.err;
}

TEST(CheckPolicyTest, UsageErrors) {
  TempDir dir;
  Outcome o = CheckPolicy(dir, {});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err.rfind("monkeyproofd check-policy: no policy file given\nusage: ", 0), 0u)
      << o.err;

  o = CheckPolicy(dir, {"--strict", dir.path()});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err.rfind("monkeyproofd check-policy: unknown option \"--strict\"\n", 0), 0u)
      << o.err;

  o = CheckPolicy(dir, {"--help"});
  EXPECT_EQ(o.status, 0);
  EXPECT_EQ(o.out.rfind("usage: monkeyproofd check-policy", 0), 0u) << o.out;
  EXPECT_EQ(o.err, "");
}

// The repository's own policies pass, as the package build checks them.
TEST(CheckPolicyTest, TheRepositoryPolicies) {
  TempDir dir;
  const Outcome o = CheckPolicy(dir, {MP_REPO_POLICIES_DIR});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out.rfind(std::string(MP_REPO_POLICIES_DIR) + ": ok (", 0), 0u) << o.out;
}

}  // namespace
