// The CI smoke of bench/egress_bench.sh (the egress path against a direct download,
// bench/README.md "egress_bench"): its in-VM part at --small size (1 MiB, 1 download and 3
// connection setups per leg, six legs) in this boot. It checks that the run ends well, that
// every row of its table has a figure for the direct, proxy and gateway variants, and that every
// download was complete (size and status) and the checked one byte-exact (sha256), so that the
// benchmark keeps working as the daemons change. Not a timed test: no figure is compared with
// anything (speed claims live in bench/README.md).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e_stack.h"

namespace mp::testing {
namespace {

const std::string kSourceDir = MP_SOURCE_DIR;
const std::string kBuildDir = MP_BUILD_DIR;
const std::string kOut = "/var/tmp/mp-egress-bench-smoke";

// The rows of egress_bench.py's table whose cells must all hold a figure.
const std::vector<std::string> kRows = {
    "transfer of 1048576 bytes, median",
    "throughput, median",
    "connection setup: time to first byte of a small file, median",
    "TCP connect (curl's time_connect), median",
    "upstream CPU / transfer time (the server's load)",
    "monkeyproof-egress CPU per GiB",
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

TEST(EgressBenchSmoke, SmallRunMeasuresEveryRowForTheThreePaths) {
  ASSERT_EQ(RunToEnd({"/bin/rm", "-rf", kOut}, {"PATH=/usr/bin:/bin"}, std::chrono::seconds(30)),
            0);
  ASSERT_EQ(::mkdir(kOut.c_str(), 0755), 0);
  const std::string log = kOut + "/run.log";
  const auto start = Clock::now();
  Child c;
  Child::Options o;
  o.argv = {"/bin/bash", kSourceDir + "/bench/egress_bench.sh", "--in-vm", kBuildDir, kOut + "/run",
            "--small"};
  o.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
           "HOME=/root", "MP_TEST_VM=1"};
  o.log = log;
  ASSERT_TRUE(c.Start(o));
  int status = c.Wait(std::chrono::seconds(600));
  if (status == -1) status = c.Stop(SIGTERM);
  const std::string text = ReadFile(log);
  std::printf("egress_bench.sh --small: %s after %.1f s\n%s\n", DescribeStatus(status).c_str(),
              SecondsSince(start), Tail(log, 6000).c_str());
  ASSERT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "egress_bench.sh --small: " << DescribeStatus(status) << " (its output above)";
  EXPECT_EQ(text.find("MISSING ROW"), std::string::npos);
  // Columns: figure, unit, direct, proxy, gateway, proxy / direct, gateway / direct.
  for (const auto& label : kRows) {
    const auto cells = Cells(text, label);
    ASSERT_EQ(cells.size(), 7u) << "no table row \"" << label << "\"";
    for (size_t i = 2; i < cells.size(); ++i) {
      EXPECT_NE(cells[i], "-") << label << ": no figure in column " << i;
      EXPECT_EQ(cells[i].find("(-"), std::string::npos) << label << ": a leg without a figure";
      EXPECT_EQ(cells[i].find("/ -"), std::string::npos) << label << ": a leg without a figure";
    }
  }
  // TLS on the client's side: direct and proxy only (the gateway's endpoint is plain HTTP).
  const auto tls = Cells(text, "TLS done (curl's time_appconnect), median");
  ASSERT_EQ(tls.size(), 7u);
  EXPECT_NE(tls[2], "-");
  EXPECT_NE(tls[3], "-");
  // Every sample there, every download complete and byte-exact.
  const std::vector<std::pair<std::string, std::string>> counts = {
      {"transfer samples", "2 (1 / 1)"},
      {"setup samples", "6 (3 / 3)"},
      {"downloads complete and byte-exact", "1 (1 / 1)"},
  };
  for (const auto& [label, want] : counts) {
    const auto cells = Cells(text, label);
    ASSERT_EQ(cells.size(), 7u) << "no table row \"" << label << "\"";
    for (size_t i = 2; i <= 4; ++i) EXPECT_EQ(cells[i], want) << label << ", column " << i;
  }
}

}  // namespace
}  // namespace mp::testing
