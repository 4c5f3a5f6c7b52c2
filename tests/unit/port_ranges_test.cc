// The port sysctls' parsers and readers (common/port_ranges.h): ip_local_reserved_ports in
// the kernel's format (ports, ranges, empty) and everything else refused; ip_local_port_range.
#include "common/port_ranges.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mp::common {
namespace {

std::vector<PortRange> Reserved(const char* text) {
  auto r = ParseReservedPorts(text);
  EXPECT_TRUE(r) << "\"" << text << "\": " << (r ? "" : r.error().ToString());
  return r ? *r : std::vector<PortRange>{};
}

TEST(ParseReservedPortsTest, TakesTheKernelsFormat) {
  EXPECT_TRUE(Reserved("").empty());
  EXPECT_TRUE(Reserved("\n").empty()) << "what the kernel prints for none";
  EXPECT_EQ(Reserved("8080\n"), (std::vector<PortRange>{{8080, 8080}}));
  EXPECT_EQ(Reserved("3200,8080-8090,50000\n"),
            (std::vector<PortRange>{{3200, 3200}, {8080, 8090}, {50000, 50000}}));
  EXPECT_EQ(Reserved("0,65535"), (std::vector<PortRange>{{0, 0}, {65535, 65535}}));
  EXPECT_EQ(Reserved("0-65535\n"), (std::vector<PortRange>{{0, 65535}}));
  EXPECT_EQ(Reserved("7-7"), (std::vector<PortRange>{{7, 7}}));
}

TEST(ParseReservedPortsTest, RefusesEverythingElseNamingTheByte) {
  for (const char* bad : {",",          "1,",    ",1",
                          "1,,2",       "1 ,2",  "1, 2",
                          " 1",         "1 ",    "1\n\n",
                          "\n1",        "1-",    "-1",
                          "1--2",       "1-2-3", "10-5",
                          "65536",      "99999", "123456",
                          "007",        "01-5",  "+1",
                          "0x10",       "1;2",   "1\t",
                          "4294967297", "1\r\n", std::string("1\0", 2).c_str()}) {
    auto r = ParseReservedPorts(bad);
    EXPECT_FALSE(r) << "\"" << bad << "\"";
  }
  EXPECT_FALSE(ParseReservedPorts(std::string_view("1\0", 2)));
  auto e = ParseReservedPorts("80,90x");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().ToString().find("byte 5"), std::string::npos) << e.error().ToString();
}

TEST(ParseEphemeralPortRangeTest, TakesTwoPortsInOrder) {
  auto r = ParseEphemeralPortRange("32768\t60999\n");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, (PortRange{32768, 60999}));
  EXPECT_EQ(*ParseEphemeralPortRange("1 1"), (PortRange{1, 1}));
  EXPECT_EQ(*ParseEphemeralPortRange("1024  \t65535"), (PortRange{1024, 65535}));
  for (const char* bad : {"", "\n", "32768", "32768\t", "0 100", "500 400", "1 70000", "x y",
                          "1\t2\t3", "1\t2\n\n", "01 2", "1-2", " 1 2"}) {
    EXPECT_FALSE(ParseEphemeralPortRange(bad)) << "\"" << bad << "\"";
  }
}

TEST(PortRangesTest, ReadsTheFilesAndNamesThem) {
  char path[] = "/tmp/mp-reserved-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const char text[] = "3200,8000-8001\n";
  ASSERT_EQ(::write(fd, text, std::strlen(text)), static_cast<ssize_t>(std::strlen(text)));
  auto r = ReadReservedPorts(path);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, (std::vector<PortRange>{{3200, 3200}, {8000, 8001}}));
  EXPECT_TRUE(AnyContains(*r, 8001));
  EXPECT_FALSE(AnyContains(*r, 8002));
  auto e = ReadEphemeralPortRange(path);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().ToString().find(path), std::string::npos) << e.error().ToString();
  ::close(fd);
  ::unlink(path);
  auto gone = ReadReservedPorts(path);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().errnum, ENOENT);
}

TEST(SquattablePortWarningTest, WarnsForAPortInTheRangeThatIsNotReserved) {
  const PortRange range{32768, 60999};
  EXPECT_EQ(SquattablePortWarning(3200, range, {}), "") << "below the range: the guard refuses it";
  EXPECT_EQ(SquattablePortWarning(61000, range, {}), "");
  const std::string w = SquattablePortWarning(40000, range, {});
  EXPECT_NE(w.find("port 40000 is in the ephemeral range 32768-60999"), std::string::npos) << w;
  EXPECT_NE(w.find("ip_local_reserved_ports=40000"), std::string::npos) << w;
  EXPECT_EQ(SquattablePortWarning(40000, range, {{39000, 41000}}), "") << "reserved";
  EXPECT_NE(SquattablePortWarning(32768, range, {{40000, 40000}}), "") << "the range's start";
}

}  // namespace
}  // namespace mp::common
