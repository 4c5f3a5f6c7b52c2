// The client address behind trusted proxies (http/client_address.h): address and network
// parsing, X-Forwarded-For and RFC 7239 Forwarded (quoting, brackets, ports, obfuscated
// identifiers, several elements and header lines, malformed values), and the right-most
// untrusted walk, with the spoofing attempts it must resist and their controls. Pure
// functions; runs as any user.
#include "http/client_address.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace mp::http {
namespace {

using Kind = ForwardedHop::Kind;

IpAddress Ip(std::string_view text) {
  const auto a = ParseIpAddress(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

std::vector<IpNetwork> Nets(std::string_view text) {
  auto n = ParseNetworkList(text);
  EXPECT_TRUE(n.has_value()) << text << ": " << (n ? "" : n.error().ToString());
  return n ? *n : std::vector<IpNetwork>{};
}

// The hops as text: "1.2.3.4", "_obf", "?" for kUnknown.
std::vector<std::string> Text(const std::vector<ForwardedHop>& hops) {
  std::vector<std::string> out;
  for (const auto& h : hops) {
    switch (h.kind) {
      case Kind::kAddress:
        out.push_back(h.address.ToString());
        break;
      case Kind::kObfuscated:
        out.push_back(h.obfuscated);
        break;
      case Kind::kUnknown:
        out.push_back("?");
        break;
    }
  }
  return out;
}

using Strings = std::vector<std::string>;

TEST(IpAddressTest, ParsesStrictFormsAndFoldsMappedIpv4) {
  EXPECT_EQ(Ip("192.0.2.7").ToString(), "192.0.2.7");
  EXPECT_FALSE(Ip("192.0.2.7").v6);
  EXPECT_EQ(Ip("2001:DB8:0:0::1").ToString(), "2001:db8::1");
  EXPECT_TRUE(Ip("2001:db8::1").v6);
  EXPECT_EQ(Ip("::ffff:192.0.2.7"), Ip("192.0.2.7"));
  for (const char* bad : {"", "192.0.2", "192.0.2.7:80", "[::1]", "::1%eth0", "1.2.3.4 ",
                          "01.2.3.4", "256.0.0.1", "localhost", "unknown"}) {
    EXPECT_FALSE(ParseIpAddress(bad).has_value()) << bad;
  }
}

TEST(IpNetworkTest, ListsAndPrefixes) {
  const auto nets = Nets(" 127.0.0.1, ::1 ,10.0.0.0/8, 2001:db8:40::/42, 192.168.1.128/25");
  ASSERT_EQ(nets.size(), 5u);
  auto in = [&](std::string_view a) {
    for (const auto& n : nets) {
      if (n.Contains(Ip(a))) return true;
    }
    return false;
  };
  EXPECT_TRUE(in("127.0.0.1"));
  EXPECT_FALSE(in("127.0.0.2"));
  EXPECT_TRUE(in("::1"));
  EXPECT_TRUE(in("10.255.1.2"));
  EXPECT_FALSE(in("11.0.0.1"));
  EXPECT_TRUE(in("2001:db8:7f::1"));  // 0x40..0x7f in the third group: /42
  EXPECT_FALSE(in("2001:db8:80::1"));
  EXPECT_TRUE(in("192.168.1.200"));
  EXPECT_FALSE(in("192.168.1.127"));
  EXPECT_TRUE(in("::ffff:10.1.2.3"));  // a mapped address matches its IPv4 network
  EXPECT_FALSE(in("::ffff:0:0"));      // ::ffff:0.0.0.0 is 0.0.0.0, not in the list
  EXPECT_TRUE(Nets("").empty());
  EXPECT_TRUE(Nets("  ").empty());
  EXPECT_EQ(Nets("0.0.0.0/0").size(), 1u);
  EXPECT_TRUE(Nets("0.0.0.0/0")[0].Contains(Ip("203.0.113.9")));
  EXPECT_FALSE(Nets("0.0.0.0/0")[0].Contains(Ip("2001:db8::1")));
}

TEST(IpNetworkTest, IncludesLoopback) {
  const auto loopback = [](const char* list) { return IncludesLoopback(*ParseNetworkList(list)); };
  EXPECT_TRUE(loopback("127.0.0.1"));
  EXPECT_TRUE(loopback("10.0.0.1, ::1"));
  EXPECT_TRUE(loopback("127.0.0.2"));
  EXPECT_TRUE(loopback("127.0.0.0/8"));
  EXPECT_TRUE(loopback("0.0.0.0/0"));
  EXPECT_TRUE(loopback("::/0"));
  EXPECT_TRUE(loopback("::ffff:127.0.0.1"));  // folded to IPv4
  EXPECT_FALSE(loopback(""));
  EXPECT_FALSE(loopback("10.0.0.0/8, 192.168.1.1, fd00::/8"));
  EXPECT_FALSE(loopback("128.0.0.0/1"));
}

TEST(IpNetworkTest, ErrorsNameTheItem) {
  for (const auto& [text, part] : std::vector<std::pair<std::string, std::string>>{
           {"10.0.0.1/8", "host bits are set below the prefix; write 10.0.0.0/8"},
           {"10.0.0.0/33", "over 32"},
           {"::/129", "over 128"},
           {"10.0.0.0/", "not a number"},
           {"10.0.0.0/x", "not a number"},
           {"proxy.example", "\"proxy.example\": not an IPv4 or IPv6 address"},
           {"127.0.0.1,,::1", "empty item"},
           {"127.0.0.1,", "empty item"},
       }) {
    auto r = ParseNetworkList(text);
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().what.find(part), std::string::npos) << text << ": " << r.error().what;
  }
}

TEST(XForwardedForTest, ItemsPortsBracketsAndGarbage) {
  EXPECT_EQ(Text(ParseXForwardedFor({"203.0.113.7, 10.0.0.2"})),
            (Strings{"203.0.113.7", "10.0.0.2"}));
  EXPECT_EQ(Text(ParseXForwardedFor({"203.0.113.7:5000,[2001:db8::1]:443 , 2001:db8::2,[::3]"})),
            (Strings{"203.0.113.7", "2001:db8::1", "2001:db8::2", "::3"}));
  EXPECT_EQ(
      Text(ParseXForwardedFor({"unknown, evil.example, 1.2.3.4:x, 1.2.3.4:123456, [1.2.3.4]"})),
      (Strings{"?", "?", "?", "?", "?"}));
  // Empty items are no hop; several header lines are one list, in order.
  EXPECT_EQ(Text(ParseXForwardedFor({" , 192.0.2.1,,", "192.0.2.2", ""})),
            (Strings{"192.0.2.1", "192.0.2.2"}));
  EXPECT_TRUE(ParseXForwardedFor({}).empty());
}

TEST(XForwardedForTest, KeepsTheRightmostHopsOnly) {
  std::string many;
  for (int i = 0; i < 1000; ++i) many += "192.0.2." + std::to_string(i % 200) + ", ";
  many += "198.51.100.1";
  const auto hops = ParseXForwardedFor({many});
  ASSERT_EQ(hops.size(), kMaxForwardedHops);
  EXPECT_EQ(hops.back().address.ToString(), "198.51.100.1");
}

TEST(ForwardedTest, Rfc7239Examples) {
  // RFC 7239 sections 4 and 7.
  EXPECT_EQ(Text(ParseForwarded({R"(for="_gazonk")"})), (Strings{"_gazonk"}));
  EXPECT_EQ(Text(ParseForwarded({R"(For="[2001:db8:cafe::17]:4711")"})),
            (Strings{"2001:db8:cafe::17"}));
  EXPECT_EQ(Text(ParseForwarded({"for=192.0.2.60;proto=http;by=203.0.113.43"})),
            (Strings{"192.0.2.60"}));
  EXPECT_EQ(Text(ParseForwarded({"for=192.0.2.43, for=198.51.100.17"})),
            (Strings{"192.0.2.43", "198.51.100.17"}));
  EXPECT_EQ(Text(ParseForwarded({R"(for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown)"})),
            (Strings{"192.0.2.43", "2001:db8:cafe::17", "?"}));
  EXPECT_EQ(Text(ParseForwarded({R"(for="_hidden:_port", for="192.0.2.1:8080")"})),
            (Strings{"_hidden", "192.0.2.1"}));
}

TEST(ForwardedTest, ElementsWithoutForAndOddSpacing) {
  // An element without for= is a hop that says nothing (kUnknown); empty elements are none.
  EXPECT_EQ(Text(ParseForwarded({"proto=https;by=10.0.0.1, for=192.0.2.9"})),
            (Strings{"?", "192.0.2.9"}));
  EXPECT_EQ(Text(ParseForwarded({" , ;for=192.0.2.9 ; proto=https ;, ,"})), (Strings{"192.0.2.9"}));
  EXPECT_EQ(Text(ParseForwarded({"FOR=192.0.2.9"})), (Strings{"192.0.2.9"}));
  EXPECT_EQ(Text(ParseForwarded({R"(for="192.0.2.\9")"})), (Strings{"192.0.2.9"}));  // quoted-pair
  // IPv6 needs its brackets (the RFC also wants quotes around them; a proxy that leaves them
  // out is read anyway).
  EXPECT_EQ(Text(ParseForwarded({"for=[2001:db8::1]"})), (Strings{"2001:db8::1"}));
  EXPECT_EQ(Text(ParseForwarded({R"(for="2001:db8::1")"})), (Strings{"?"}));
  EXPECT_EQ(Text(ParseForwarded({R"(for="_bad!")", R"(for="_)"})), (Strings{"?", "?"}));
}

TEST(ForwardedTest, MalformedValuesEndInAnUnknownHop) {
  for (const char* bad : {R"(for="192.0.2.1)", "for", "for=", "=1.2.3.4", "for=1.2.3.4 x",
                          "for=1.2.3.4;for=5.6.7.8", R"(for="1.2.3.4"x)", R"(for="\)"}) {
    const auto hops = ParseForwarded({bad});
    ASSERT_FALSE(hops.empty()) << bad;
    EXPECT_EQ(hops.back().kind, Kind::kUnknown) << bad;
  }
  // A malformed line spoils only what follows it in that line.
  EXPECT_EQ(Text(ParseForwarded({"for=192.0.2.1, for=\"x", "for=192.0.2.2"})),
            (Strings{"192.0.2.1", "?", "192.0.2.2"}));
}

// ---- The walk.

class ResolveTest : public ::testing::Test {
 protected:
  std::string Xff(std::string_view peer, std::vector<std::string_view> values) {
    return ClientAddressOf(Ip(peer), ForwardedHeader::kXForwardedFor, values, trusted_);
  }
  std::string Fwd(std::string_view peer, std::vector<std::string_view> values) {
    return ClientAddressOf(Ip(peer), ForwardedHeader::kForwarded, values, trusted_);
  }
  std::vector<IpNetwork> trusted_ = Nets("127.0.0.1, ::1, 10.0.0.0/8");
};

TEST_F(ResolveTest, AnUntrustedPeerIsTheClientWhateverItSays) {
  // Attack: a client on the open internet claims to be someone else.
  EXPECT_EQ(Xff("203.0.113.9", {"192.0.2.1"}), "203.0.113.9");
  EXPECT_EQ(Fwd("203.0.113.9", {"for=192.0.2.1"}), "203.0.113.9");
  // Control: the same header from a trusted proxy is believed.
  EXPECT_EQ(Xff("127.0.0.1", {"192.0.2.1"}), "192.0.2.1");
  EXPECT_EQ(Fwd("127.0.0.1", {"for=192.0.2.1"}), "192.0.2.1");
  // No trusted proxies configured: nothing is believed.
  EXPECT_EQ(ClientAddressOf(Ip("127.0.0.1"), ForwardedHeader::kXForwardedFor, {"192.0.2.1"}, {}),
            "127.0.0.1");
}

TEST_F(ResolveTest, TheRightmostUntrustedHopIsTheClient) {
  // Attack: the client writes its own X-Forwarded-For; the proxy appends the real address.
  EXPECT_EQ(Xff("127.0.0.1", {"198.51.100.66, 203.0.113.9"}), "203.0.113.9");
  // Several trusted proxies in a row are skipped.
  EXPECT_EQ(Xff("127.0.0.1", {"198.51.100.66, 203.0.113.9, 10.1.1.1, 10.2.2.2"}), "203.0.113.9");
  // The spoofed hop claims to be a trusted proxy: still the right-most untrusted wins.
  EXPECT_EQ(Xff("10.0.0.5", {"10.9.9.9, 203.0.113.9"}), "203.0.113.9");
  // Control: reading the left-most hop (what a naive parser does) would give the spoof.
  EXPECT_EQ(Text(ParseXForwardedFor({"198.51.100.66, 203.0.113.9"})).front(), "198.51.100.66");
  // All hops trusted: the left-most.
  EXPECT_EQ(Xff("127.0.0.1", {"10.1.1.1, 10.2.2.2"}), "10.1.1.1");
  // No header from a trusted peer: the peer.
  EXPECT_EQ(Xff("127.0.0.1", {}), "127.0.0.1");
  EXPECT_EQ(Xff("::1", {"2001:db8::7"}), "2001:db8::7");
  EXPECT_EQ(Xff("::ffff:127.0.0.1", {"192.0.2.1"}), "192.0.2.1");
  // Several header lines are one list: the last line is the nearest proxy's.
  EXPECT_EQ(Xff("127.0.0.1", {"203.0.113.1", "203.0.113.2"}), "203.0.113.2");
}

TEST_F(ResolveTest, UnbelievableHopsStopAtTheProxyThatReportedThem) {
  // The proxy says "unknown", or writes garbage: the client is counted as that proxy.
  EXPECT_EQ(Xff("127.0.0.1", {"203.0.113.9, unknown"}), "127.0.0.1");
  EXPECT_EQ(Xff("127.0.0.1", {"203.0.113.9, 10.0.0.7, garbage"}), "127.0.0.1");
  EXPECT_EQ(Xff("127.0.0.1", {"203.0.113.9, garbage, 10.0.0.7"}), "10.0.0.7");
  EXPECT_EQ(Fwd("127.0.0.1", {R"(for=203.0.113.9, for="broken)"}), "127.0.0.1");
  EXPECT_EQ(Fwd("127.0.0.1", {"for=203.0.113.9, proto=https"}), "127.0.0.1");
  // An obfuscated identifier is the client's key.
  EXPECT_EQ(Fwd("127.0.0.1", {R"(for=192.0.2.1, for="_c7a1")"}), "_c7a1");
  // Forwarded IPv6 with brackets and a port.
  EXPECT_EQ(Fwd("::1", {R"(for="[2001:db8:cafe::17]:4711")"}), "2001:db8:cafe::17");
}

}  // namespace
}  // namespace mp::http
