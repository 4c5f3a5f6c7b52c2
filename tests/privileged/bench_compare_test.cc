// The CI smoke of bench/compare.sh (the original MonkeyProof server against ours, bench/README.md
// "compare"): its in-VM part at --small size in this boot, with the original and Bun that
// tests/compat/install.sh put into BUILD_DIR/compat for the compatibility test. It checks that
// the run ends well and that its table has every row, each with a figure for both servers (and
// the physical limits), so that the benchmark keeps working as the servers change. Not a timed
// test: no figure is compared with anything.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e_stack.h"

namespace mp::testing {
namespace {

const std::string kSourceDir = MP_SOURCE_DIR;
const std::string kBuildDir = MP_BUILD_DIR;
const std::string kOut = "/var/tmp/mp-compare-smoke";

// The rows of compare.py's table (--small: 5 and 10 sessions at once instead of 50 and 500).
const std::vector<std::string> kRows = {
    "POST -> exit of `sh -lc true`, median",
    "POST -> exit of `/bin/true` (command/args), median",
    "POST round trip alone (-> 201), median",
    "GET /sessions/:id round trip (no spawn), median",
    "POST refused at the spawn (missing cwd, 400), median",
    "5 concurrent: POST p50",
    "5 concurrent: POST p99",
    "5 concurrent: all exited",
    "10 concurrent: POST p50",
    "10 concurrent: POST p99",
    "10 concurrent: all exited",
    "stream, native client",
    "stream, Python client (same stream)",
    "stream received / sent, native client",
    "native client CPU / stream time",
    "server CPU-seconds per GiB streamed",
    "server RSS idle (before the first request)",
    "server RSS peak (whole run)",
};
const std::vector<std::string> kLimitRows = {
    "posix_spawn of /bin/true, median",
    "raw pipe (same generator, native reader)",
    "original's native stream / raw pipe",
    "ours's native stream / raw pipe",
};

// The table line that starts with "| LABEL |", split into its cells.
std::vector<std::string> Cells(const std::string& text, const std::string& label) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("| " + label + " |", 0) != 0) continue;
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream row(line.substr(1));
    while (std::getline(row, cell, '|')) {
      const auto b = cell.find_first_not_of(' ');
      const auto e = cell.find_last_not_of(' ');
      cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
    }
    return cells;
  }
  return {};
}

TEST(BenchCompareSmoke, SmallRunPrintsEveryRowForBothServers) {
  for (const std::string& path :
       {kBuildDir + "/compat/original/bin/bun", kBuildDir + "/bench/stream_client"}) {
    ASSERT_EQ(::access(path.c_str(), X_OK), 0)
        << path << " is missing: build stream_client and run tests/compat/install.sh " << kBuildDir
        << " on the host before the VM boots";
  }
  ASSERT_EQ(RunToEnd({"/bin/rm", "-rf", kOut}, {"PATH=/usr/bin:/bin"}, std::chrono::seconds(30)),
            0);
  ASSERT_EQ(::mkdir(kOut.c_str(), 0755), 0);
  const std::string log = kOut + "/run.log";
  const auto start = Clock::now();
  Child c;
  Child::Options o;
  o.argv = {"/bin/bash", kSourceDir + "/bench/compare.sh", "--in-vm", kBuildDir, kOut + "/run",
            "--small"};
  o.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
           "HOME=/root", "MP_TEST_VM=1"};
  o.log = log;
  ASSERT_TRUE(c.Start(o));
  const int status = c.Wait(std::chrono::seconds(1500));
  const std::string text = ReadFile(log);
  std::printf("compare.sh --small: %s after %.1f s\n%s\n", DescribeStatus(status).c_str(),
              SecondsSince(start), Tail(log, 6000).c_str());
  ASSERT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "compare.sh --small: " << DescribeStatus(status) << " (its output above)";
  EXPECT_EQ(text.find("MISSING ROW"), std::string::npos);
  for (const auto& label : kRows) {
    const auto cells = Cells(text, label);
    ASSERT_EQ(cells.size(), 5u) << "no table row \"" << label << "\"";
    EXPECT_NE(cells[2], "-") << label << ": no figure for the original";
    EXPECT_NE(cells[3], "-") << label << ": no figure for ours";
    EXPECT_NE(cells[4], "-") << label << ": no ratio";
  }
  for (const auto& label : kLimitRows) {
    const auto cells = Cells(text, label);
    ASSERT_EQ(cells.size(), 3u) << "no table row \"" << label << "\"";
    EXPECT_NE(cells[2], "-") << label << ": no figure";
  }
}

}  // namespace
}  // namespace mp::testing
