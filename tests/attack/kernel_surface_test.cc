// Less kernel surface (issue 13): a session must not make the kernel load rarely used modules.
// `mp_probe kernel-surface` tries every line discipline (TIOCSETD), exotic socket families,
// inet protocols beyond TCP/UDP/ICMP and netlink families beyond route; the test counts the
// host's loaded modules (/proc/modules) and the kernel's autoload requests around it.
//
// The guest has no module tree of its own (its kernel's modules are not on the host), so the
// suite installs one for the kernel that runs: the dependency-free modules that
// tests/vm/fetch-kernel.sh copies to CACHE_DIR/autoload (n_hdlc = tty-ldisc-13, can =
// net-pf-29, kcm = net-pf-41, phonet = net-pf-35, qrtr = net-pf-42), indexed by depmod, and
// kernel.modprobe pointed at a wrapper that logs each request, then runs modprobe. Everything
// is undone at the end (the guest's root is a throwaway overlay anyway).
//
// Blocked: under the default filter no module loads and no tty-ldisc or net-pf request is
// made. Controls, the same probe with one rule removed: the kernel asks for the module and,
// where the tree has it, loads it.
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sandbox_runner.h"
#include "staged_probe.h"

namespace mp::testing {
namespace {

const std::string kAutoloadDir = MP_VM_AUTOLOAD_DIR;
const std::vector<std::string> kModules = {"n_hdlc", "can", "kcm", "phonet", "qrtr"};
constexpr char kWrapper[] = "/run/mp-modprobe-wrapper";
constexpr char kRequestLog[] = "/run/mp-modprobe.log";
constexpr char kModprobeSysctl[] = "/proc/sys/kernel/modprobe";

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  f.close();
  return static_cast<bool>(f);
}

// The names in /proc/modules.
std::vector<std::string> LoadedModules() {
  std::vector<std::string> names;
  std::istringstream in(Slurp("/proc/modules"));
  std::string line;
  while (std::getline(in, line)) names.push_back(line.substr(0, line.find(' ')));
  return names;
}

bool IsLoaded(const std::string& name) {
  for (const auto& m : LoadedModules()) {
    if (m == name) return true;
  }
  return false;
}

// The autoload requests logged since the log was last cleared that the probe can cause.
std::vector<std::string> ProbeRequests() {
  std::vector<std::string> out;
  std::istringstream in(Slurp(kRequestLog));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("tty-ldisc-") != std::string::npos || line.find("net-pf-") != std::string::npos) {
      out.push_back(line);
    }
  }
  return out;
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += "  " + l + "\n";
  return s;
}

class KernelSurfaceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    runner_ = new SandboxRunner("mp-surface");
    struct utsname u {};
    ASSERT_EQ(::uname(&u), 0);
    tree_ = new std::string(std::string("/lib/modules/") + u.release);
    setup_error_ = new std::string(Install());
  }
  static void TearDownTestSuite() {
    if (!old_modprobe_.empty()) (void)WriteText(kModprobeSysctl, old_modprobe_);
    Unload();
    if (installed_tree_) {
      std::error_code ec;
      std::filesystem::remove_all(*tree_, ec);
    }
    delete runner_;
    delete tree_;
    delete setup_error_;
  }

  // The module tree and the logging modprobe; "" when ready, else why not.
  static std::string Install() {
    if (::access((*tree_ + "/modules.dep").c_str(), F_OK) == 0) {
      return *tree_ + " already has a module tree; this suite installs its own";
    }
    for (const auto& m : kModules) {
      if (::access((kAutoloadDir + "/" + m + ".ko").c_str(), R_OK) != 0) {
        return kAutoloadDir + "/" + m + ".ko is missing: tests/vm/fetch-kernel.sh puts it there";
      }
    }
    std::error_code ec;
    std::filesystem::create_directories(*tree_ + "/extra", ec);
    if (ec) return "mkdir " + *tree_ + "/extra: " + ec.message();
    installed_tree_ = true;
    for (const auto& m : kModules) {
      std::filesystem::copy_file(kAutoloadDir + "/" + m + ".ko", *tree_ + "/extra/" + m + ".ko",
                                 ec);
      if (ec) return "copy " + m + ".ko: " + ec.message();
    }
    const std::string release = tree_->substr(tree_->rfind('/') + 1);
    if (std::system(("/sbin/depmod " + release + " 2>/dev/null").c_str()) != 0) {
      return "depmod " + release + " failed";
    }
    old_modprobe_ = Slurp(kModprobeSysctl);
    if (old_modprobe_.empty()) return std::string("cannot read ") + kModprobeSysctl;
    if (!WriteText(kWrapper, std::string("#!/bin/sh\necho \"$*\" >>") + kRequestLog +
                                 "\nexec /sbin/modprobe \"$@\"\n") ||
        ::chmod(kWrapper, 0755) != 0 || !WriteText(kModprobeSysctl, kWrapper)) {
      return std::string("cannot install the logging modprobe ") + kWrapper;
    }
    Unload();
    return "";
  }

  static void Unload() {
    for (const auto& m : kModules) {
      // A module still in use stays; SetUp then fails naming it.
      if (IsLoaded(m) && std::system(("/sbin/rmmod " + m + " 2>/dev/null").c_str()) != 0) continue;
    }
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_->empty()) << *setup_error_;
    Unload();
    for (const auto& m : kModules) ASSERT_FALSE(IsLoaded(m)) << m << " stays loaded";
    ASSERT_TRUE(WriteText(kRequestLog, ""));
  }

  // Runs the probe under `profile`; returns the modules it made the kernel load.
  std::vector<std::string> Probe(const sandbox::SeccompProfile& profile) {
    auto program = sandbox::CompileSeccomp(profile);
    EXPECT_TRUE(program) << program.error().ToString();
    if (!program) return {};
    sandbox::SpawnRequest req = runner_->BaseRequest({StagedProbe(), "kernel-surface"});
    req.seccomp = program->fprog();
    const std::vector<std::string> before = LoadedModules();
    auto ran = runner_->Run(req);
    EXPECT_TRUE(ran) << ran.error().ToString();
    if (!ran) return {};
    EXPECT_EQ(ran->exit_code(), 0) << ran->out;
    output_ = ran->out;
    std::vector<std::string> loaded;
    for (const auto& m : LoadedModules()) {
      bool was = false;
      for (const auto& b : before) was = was || b == m;
      if (!was) loaded.push_back(m);
    }
    return loaded;
  }

  static SandboxRunner* runner_;
  static std::string* tree_;
  static std::string* setup_error_;
  static std::string old_modprobe_;
  static bool installed_tree_;
  std::string output_;
};
SandboxRunner* KernelSurfaceTest::runner_ = nullptr;
std::string* KernelSurfaceTest::tree_ = nullptr;
std::string* KernelSurfaceTest::setup_error_ = nullptr;
std::string KernelSurfaceTest::old_modprobe_;
bool KernelSurfaceTest::installed_tree_ = false;

TEST_F(KernelSurfaceTest, TheDefaultFilterLoadsNothing) {
  const size_t before = LoadedModules().size();
  const auto loaded = Probe(sandbox::DefaultDenyProfile());
  EXPECT_TRUE(loaded.empty()) << Joined(loaded) << output_;
  EXPECT_EQ(LoadedModules().size(), before);
  EXPECT_TRUE(ProbeRequests().empty()) << "autoload requests:\n"
                                       << Joined(ProbeRequests()) << output_;
}

// Control: without the TIOCSETD rule, a line discipline is autoloaded (n_hdlc).
TEST_F(KernelSurfaceTest, ControlWithoutTheLineDisciplineRuleLoadsNHdlc) {
  sandbox::SeccompProfile p = sandbox::DefaultDenyProfile();
  p.deny_line_disciplines = false;
  const auto loaded = Probe(p);
  EXPECT_TRUE(IsLoaded("n_hdlc")) << "loaded:\n" << Joined(loaded) << output_;
  EXPECT_NE(Slurp(kRequestLog).find("tty-ldisc-13"), std::string::npos) << Slurp(kRequestLog);
}

// Control: without the family rule, socket() autoloads the families the tree has.
TEST_F(KernelSurfaceTest, ControlWithoutTheFamilyRuleLoadsSocketFamilies) {
  sandbox::SeccompProfile p = sandbox::DefaultDenyProfile();
  p.restrict_socket_families = false;
  const auto loaded = Probe(p);
  for (const char* m : {"can", "kcm", "phonet", "qrtr"}) {
    EXPECT_TRUE(IsLoaded(m)) << m << "; loaded:\n" << Joined(loaded) << output_;
  }
}

// Control: without the protocol rule, the kernel is asked for SCTP, DCCP, L2TP and netlink
// families. None of those is in the installed tree (each has dependencies), so the control
// shows the requests; on a host with its full module tree each would load.
TEST_F(KernelSurfaceTest, ControlWithoutTheProtocolRuleRequestsProtocolModules) {
  sandbox::SeccompProfile p = sandbox::DefaultDenyProfile();
  p.restrict_socket_protocols = false;
  (void)Probe(p);
  const std::string log = Slurp(kRequestLog);
  for (const char* request :
       {"net-pf-2-proto-132", "net-pf-10-proto-132", "net-pf-2-proto-33", "net-pf-16-proto-"}) {
    EXPECT_NE(log.find(request), std::string::npos) << request << " not requested:\n"
                                                    << log << output_;
  }
}

}  // namespace
}  // namespace mp::testing
