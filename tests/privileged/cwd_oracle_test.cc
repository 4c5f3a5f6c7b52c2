// A request's cwd is no oracle for root-only paths (issue 13, "No root oracle"). As root in the
// test VM: a directory only root may search holds `exists/` and not `missing/`; a request names
// each through every way out of a workspace root (an absolute path, `..`, an absolute and a
// relative symlink planted in a workspace, as a session could). ResolveWorkspace must answer
// each pair identically (the cwd's own text aside). The control runs the same probes through
// realpath(3) as root, the resolution the protection replaced, and shows the pair apart: the
// answer would tell whether the root-only path exists.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "supervisor/policy.h"

namespace mp::supervisor {
namespace {

const std::string kBase = "/var/tmp/mp-cwd-oracle";
const std::string kRoot = kBase + "/ws";             // the workspace root
const std::string kPlant = kRoot + "/session";       // a session's workspace, its links
const std::string kPrivate = kBase + "/private";     // 0700 root: only root can look inside
const std::string kExists = kPrivate + "/exists";    // a directory
const std::string kFile = kPrivate + "/file";        // a regular file
const std::string kMissing = kPrivate + "/missing";  // nothing

struct ProbePair {
  std::string what;
  std::string present;  // names kExists (or kFile) through the route
  std::string absent;   // names kMissing through the same route
};

class CwdOracleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::error_code ec;
    std::filesystem::remove_all(kBase, ec);
    ASSERT_EQ(::mkdir(kBase.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(kRoot.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(kPlant.c_str(), 0777), 0);
    ASSERT_EQ(::mkdir(kPrivate.c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(kExists.c_str(), 0755), 0);
    ASSERT_EQ(::close(::creat(kFile.c_str(), 0600)), 0);
    for (const auto& [link, target] : std::vector<std::pair<std::string, std::string>>{
             {"abs-exists", kExists},
             {"abs-missing", kMissing},
             {"abs-file", kFile},
             {"rel-exists", "../../private/exists"},
             {"rel-missing", "../../private/missing"},
         }) {
      ASSERT_EQ(::symlink(target.c_str(), (kPlant + "/" + link).c_str()), 0) << link;
    }
    policy_.name = "oracle";
    policy_.workspace_roots = {kRoot};
    policy_.default_workspace = kPlant;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(kBase, ec);
  }

  static std::vector<ProbePair> Probes() {
    return {
        {"absolute path outside the roots", kExists, kMissing},
        {"absolute path to a file outside", kFile, kMissing},
        {"`..` out of the root", kRoot + "/../private/exists", kRoot + "/../private/missing"},
        {"absolute symlink in a workspace", kPlant + "/abs-exists", kPlant + "/abs-missing"},
        {"absolute symlink to a file", kPlant + "/abs-file", kPlant + "/abs-missing"},
        {"relative symlink climbing out", kPlant + "/rel-exists", kPlant + "/rel-missing"},
        {"relative cwd through a symlink", "rel-exists", "rel-missing"},
        {"relative cwd with `..`", "../../private/exists", "../../private/missing"},
    };
  }

  // The answer to `cwd`, its own text replaced, so that answers to two cwds compare.
  std::string Answer(const std::string& cwd) {
    auto r = ResolveWorkspace(policy_, cwd);
    if (r) return "resolved " + *r;
    std::string text =
        std::string(ToString(r.error().code)) + " " + r.error().field + " " + r.error().what;
    const std::string quoted = "\"" + cwd + "\"";
    if (const size_t at = text.find(quoted); at != std::string::npos) {
      text.replace(at, quoted.size(), "\"<cwd>\"");
    }
    return text;
  }

  Policy policy_;
};

TEST_F(CwdOracleTest, RootOnlyPathsGetTheSameAnswerWhetherTheyExistOrNot) {
  ASSERT_EQ(::geteuid(), 0u) << "the probe needs root: only root's lookups could tell";
  for (const ProbePair& p : Probes()) {
    const std::string present = Answer(p.present);
    const std::string absent = Answer(p.absent);
    EXPECT_EQ(present, absent) << p.what;
    EXPECT_EQ(present.rfind("bad_request /cwd cwd \"<cwd>\" is not an existing directory", 0), 0u)
        << p.what << ": " << present;
  }
}

// Control: the resolution the protection replaced (realpath as root, then the check) tells the
// pair apart for every probe, so the probes do reach a root-only difference.
TEST_F(CwdOracleTest, ControlRealpathAsRootTellsThePairApart) {
  ASSERT_EQ(::geteuid(), 0u);
  const auto old_resolve = [&](const std::string& cwd) -> std::string {
    const std::string path = cwd.front() == '/' ? cwd : kPlant + "/" + cwd;
    char real[PATH_MAX];
    if (::realpath(path.c_str(), real) == nullptr) return "does not exist";
    struct stat st {};
    if (::stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) return "is not a directory";
    return std::string("resolves to ") + real + ", outside the roots";
  };
  for (const ProbePair& p : Probes()) {
    EXPECT_NE(old_resolve(p.present), old_resolve(p.absent)) << p.what;
  }
}

// A session's own workspace, through a symlink that stays inside the root, still resolves;
// the root itself never does.
TEST_F(CwdOracleTest, InsideTheRootStillResolvesAndTheRootIsRefused) {
  ASSERT_EQ(::mkdir((kPlant + "/sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("sub", (kPlant + "/inner").c_str()), 0);
  EXPECT_EQ(ResolveWorkspace(policy_, kPlant + "/inner").value(), kPlant + "/sub");
  EXPECT_EQ(ResolveWorkspace(policy_, "inner").value(), kPlant + "/sub");
  EXPECT_EQ(ResolveWorkspace(policy_, "").value(), kPlant);
  for (const std::string& cwd : {kRoot, kRoot + "/", kPlant + "/..", std::string("..")}) {
    EXPECT_EQ(Answer(cwd), Answer(kMissing)) << cwd;
  }
}

}  // namespace
}  // namespace mp::supervisor
