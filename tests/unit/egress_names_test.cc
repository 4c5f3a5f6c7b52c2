// The egress gateway's pure core (src/egress, issue 14): canonical host names, CONNECT
// authorities, policy allow rules and the server name of a TLS ClientHello. Each refusal is a
// case an attacker inside a session (or a careless policy) would try.
#include <arpa/nameser.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "egress/address_class.h"
#include "egress/allow_list.h"
#include "egress/client_hello.h"
#include "egress/dns_message.h"
#include "egress/host_name.h"
#include "egress/proxy_request.h"
#include "egress/upstream_url.h"

namespace mp::egress {
namespace {

TEST(EgressHostNameTest, FoldsCaseAndOneTrailingDot) {
  EXPECT_EQ(NormalizeHostName("API.Anthropic.COM.").value(), "api.anthropic.com");
  EXPECT_EQ(NormalizeHostName("xn--bcher-kva.example").value(), "xn--bcher-kva.example");
  EXPECT_EQ(NormalizeHostName("a-b.c0").value(), "a-b.c0");
}

TEST(EgressHostNameTest, Refusals) {
  for (const char* bad : {"", ".", "a..b", "example.com..", "-a.com", "a-.com", "a_b.com",
                          "a b.com", "a\r\n.com", "1.2.3", "foo.123", "*.x.com", "a:b"}) {
    EXPECT_FALSE(NormalizeHostName(bad)) << bad;
  }
  EXPECT_NE(NormalizeHostName("b\xc3\xbc"
                              "cher.example")
                .error()
                .what.find("punycode"),
            std::string::npos);
  EXPECT_FALSE(NormalizeHostName(std::string(64, 'a') + ".com"));
  EXPECT_TRUE(NormalizeHostName(std::string(63, 'a') + ".com"));
  std::string long_name;
  while (long_name.size() < 250) long_name += "abcdefghi.";
  long_name += "com";  // 253 characters
  ASSERT_EQ(long_name.size(), 253u);
  EXPECT_TRUE(NormalizeHostName(long_name));
  EXPECT_TRUE(NormalizeHostName(long_name + "."));
  EXPECT_FALSE(NormalizeHostName("a" + long_name));
}

TEST(EgressHostNameTest, CanonicalAddresses) {
  EXPECT_EQ(CanonicalAddress("10.0.0.1").value(), "10.0.0.1");
  EXPECT_EQ(CanonicalAddress("2001:DB8:0:0::1").value(), "2001:db8::1");
  EXPECT_EQ(CanonicalAddress("::ffff:169.254.169.254").value(), "169.254.169.254");
  for (const char* not_one : {"127.1", "0x7f.0.0.1", "[::1]", "fe80::1%eth0", "1.2.3.4 ", ""}) {
    EXPECT_FALSE(CanonicalAddress(not_one)) << not_one;
  }
}

TEST(EgressAuthorityTest, ConnectForms) {
  EXPECT_EQ(ParseAuthority("Example.COM.:443").value(), (Authority{"example.com", false, 443}));
  EXPECT_EQ(ParseAuthority("[2001:db8::1]:8443").value(), (Authority{"2001:db8::1", true, 8443}));
  EXPECT_EQ(ParseAuthority("10.1.2.3:1").value(), (Authority{"10.1.2.3", true, 1}));
  EXPECT_EQ(ParseAuthority("[::ffff:10.1.2.3]:65535").value(),
            (Authority{"10.1.2.3", true, 65535}));
  EXPECT_EQ((Authority{"2001:db8::1", true, 443}).ToString(), "[2001:db8::1]:443");
}

TEST(EgressAuthorityTest, Refusals) {
  for (const char* bad : {"example.com",
                          "example.com:",
                          "example.com:0",
                          "example.com:65536",
                          "example.com:99999",
                          "example.com:+443",
                          "example.com: 443",
                          "example.com:443 ",
                          "example.com:0443x",
                          "example.com:000443",
                          "2001:db8::1:443",
                          "[2001:db8::1]",
                          "[2001:db8::1]443",
                          "[10.0.0.1]:443",
                          "[::1:443",
                          "[fe80::1%eth0]:443",
                          "exa mple.com:443",
                          "example.com\r\n:443",
                          "user@example.com:443",
                          ":443",
                          "[]:443"}) {
    EXPECT_FALSE(ParseAuthority(bad)) << bad;
  }
  // The error names the part at fault.
  EXPECT_NE(ParseAuthority("example.com:70000").error().what.find("1 to 65535"), std::string::npos);
  EXPECT_NE(ParseAuthority("::1:443").error().what.find("brackets"), std::string::npos);
  EXPECT_FALSE(ParseAuthority(std::string(300, 'a') + ".com:443"));
}

TEST(EgressAllowListTest, RulesAndMatching) {
  auto list = AllowList::Parse({"api.anthropic.com:443", "*.GitHubUserContent.com.:443",
                                "10.0.0.5:5432", "[FD00::5]:443", "api.anthropic.com:443"});
  ASSERT_TRUE(list) << list.error().ToString();
  ASSERT_EQ(list->rules().size(), 4u);  // the duplicate is kept once
  EXPECT_EQ(list->rules()[1].ToString(), "*.githubusercontent.com:443");
  EXPECT_EQ(list->rules()[3].ToString(), "[fd00::5]:443");

  EXPECT_TRUE(list->Permits({"api.anthropic.com", false, 443}));
  EXPECT_FALSE(list->Permits({"api.anthropic.com", false, 80}));        // port is part of it
  EXPECT_FALSE(list->Permits({"evil-api.anthropic.com", false, 443}));  // exact means exact
  EXPECT_FALSE(list->Permits({"anthropic.com", false, 443}));
  EXPECT_TRUE(list->Permits({"raw.githubusercontent.com", false, 443}));
  EXPECT_TRUE(list->Permits({"a.b.githubusercontent.com", false, 443}));
  EXPECT_FALSE(list->Permits({"githubusercontent.com", false, 443}));  // "*." needs a label
  EXPECT_FALSE(list->Permits({"evilgithubusercontent.com", false, 443}));
  EXPECT_FALSE(list->Permits({"githubusercontent.com.evil.com", false, 443}));
  EXPECT_TRUE(list->Permits({"10.0.0.5", true, 5432}));
  EXPECT_TRUE(list->Permits({"fd00::5", true, 443}));
  EXPECT_FALSE(list->Permits({"10.0.0.6", true, 5432}));
  // A name rule never allows an address, an address rule never a name.
  EXPECT_FALSE(list->Permits({"10.0.0.5", false, 5432}));
  auto by_name = AllowList::Parse({"example.com:443"});
  ASSERT_TRUE(by_name);
  EXPECT_FALSE(by_name->Permits({"93.184.215.14", true, 443}));

  EXPECT_TRUE(list->PermitsName("api.anthropic.com"));
  EXPECT_TRUE(list->PermitsName("objects.githubusercontent.com"));
  EXPECT_FALSE(list->PermitsName("example.com"));
  EXPECT_FALSE(list->PermitsName("10.0.0.5"));

  // Control: an empty list allows nothing.
  EXPECT_FALSE(AllowList().Permits({"api.anthropic.com", false, 443}));
}

TEST(EgressAllowListTest, BadEntriesAreNamedEachOnce) {
  const std::vector<std::string> bad = {
      "*",     "*:443",   "*.com:443",    "a.*.com:443", "*x.com:443",       "*.10.0.0.1:443",
      "x.com", "x.com:0", "**.x.com:443", "[::1]",       "b\xc3\xbc.de:443", "*.:443"};
  for (const std::string& entry : bad) EXPECT_FALSE(ParseAllowRule(entry)) << entry;
  auto list = AllowList::Parse({"ok.com:443", "*", "x.com"});
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, ErrorCode::kBadRequest);
  EXPECT_NE(list.error().what.find("allow[1]: \"*\" would allow every host"), std::string::npos)
      << list.error().what;
  EXPECT_NE(list.error().what.find("allow[2]: \"x.com\""), std::string::npos);
  EXPECT_EQ(list.error().what.find("allow[0]"), std::string::npos);
  EXPECT_NE(ParseAllowRule("*.com:443").error().what.find("top-level"), std::string::npos);
}

TEST(EgressAddressClassTest, OnlyGlobalUnicastIsPublic) {
  const std::vector<std::pair<const char*, AddressClass>> cases = {
      {"93.184.215.14", AddressClass::kPublic},
      {"2606:2800:21f:cb07:6820:80da:af6b:8b2c", AddressClass::kPublic},
      {"127.0.0.1", AddressClass::kLoopback},
      {"127.255.0.9", AddressClass::kLoopback},
      {"::1", AddressClass::kLoopback},
      {"10.1.2.3", AddressClass::kPrivate},
      {"172.16.0.1", AddressClass::kPrivate},
      {"172.31.255.255", AddressClass::kPrivate},
      {"172.32.0.1", AddressClass::kPublic},
      {"192.168.1.1", AddressClass::kPrivate},
      {"100.64.0.1", AddressClass::kPrivate},
      {"100.128.0.1", AddressClass::kPublic},
      {"fd12:3456::1", AddressClass::kPrivate},
      {"fec0::1", AddressClass::kPrivate},
      {"169.254.1.1", AddressClass::kLinkLocal},
      {"fe80::1", AddressClass::kLinkLocal},
      {"169.254.169.254", AddressClass::kMetadata},
      {"fd00:ec2::254", AddressClass::kMetadata},
      {"224.0.0.251", AddressClass::kMulticast},
      {"255.255.255.255", AddressClass::kMulticast},
      {"ff02::1", AddressClass::kMulticast},
      {"0.0.0.0", AddressClass::kReserved},
      {"::", AddressClass::kReserved},
      {"192.0.2.1", AddressClass::kReserved},
      {"240.0.0.1", AddressClass::kReserved},
      {"2001:db8::1", AddressClass::kReserved},
      {"2001:0:4136:e378::1", AddressClass::kReserved},  // Teredo
      {"::127.0.0.1", AddressClass::kReserved},          // IPv4-compatible
      // IPv4 inside IPv6 keeps the inner class.
      {"::ffff:127.0.0.1", AddressClass::kLoopback},
      {"64:ff9b::a9fe:a9fe", AddressClass::kMetadata},  // NAT64 of 169.254.169.254
      {"64:ff9b::5db8:d70e", AddressClass::kPublic},
      {"2002:c0a8:0101::1", AddressClass::kPrivate},  // 6to4 of 192.168.1.1
      {"2002:7f00:1::1", AddressClass::kLoopback},
      {"localhost", AddressClass::kNotAnAddress},
      {"", AddressClass::kNotAnAddress},
  };
  for (const auto& [address, want] : cases) {
    EXPECT_EQ(ToString(ClassifyAddress(address)), ToString(want)) << address;
  }
}

TEST(EgressProxyTargetTest, ConnectAndAbsoluteForm) {
  auto tunnel = ParseProxyTarget("CONNECT", "api.example.com:443", "api.example.com:443");
  ASSERT_TRUE(tunnel) << tunnel.error().what;
  EXPECT_TRUE(tunnel->tunnel);
  EXPECT_EQ(tunnel->destination, (Authority{"api.example.com", false, 443}));
  auto v6 = ParseProxyTarget("CONNECT", "[2001:db8::1]:443", std::nullopt);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->destination.ToString(), "[2001:db8::1]:443");

  auto get = ParseProxyTarget("GET", "HTTP://Example.com/a/b?c=d", "example.com");
  ASSERT_TRUE(get) << get.error().what;
  EXPECT_FALSE(get->tunnel);
  EXPECT_EQ(get->destination, (Authority{"example.com", false, 80}));
  EXPECT_EQ(get->origin_form, "/a/b?c=d");
  EXPECT_EQ(ParseProxyTarget("GET", "http://example.com:8080", "example.com:8080")->origin_form,
            "/");
  EXPECT_EQ(ParseProxyTarget("GET", "http://example.com?q", std::nullopt)->origin_form, "/?q");
  EXPECT_EQ(ParseProxyTarget("POST", "http://[::1]/x", "[::1]:80")->destination.ToString(),
            "[::1]:80");
}

TEST(EgressProxyTargetTest, Refusals) {
  const struct {
    const char* method;
    const char* target;
    std::optional<std::string_view> host;
    const char* says;
  } cases[] = {
      {"CONNECT", "example.com", std::nullopt, "no port"},
      {"CONNECT", "example.com:0", std::nullopt, "1 to 65535"},
      {"CONNECT", "http://example.com:443", std::nullopt, "CONNECT target"},
      {"CONNECT", "exa\r\nmple.com:443", std::nullopt, "CONNECT target"},
      {"GET", "/index.html", "example.com", "not an absolute http:// URL"},
      {"GET", "https://example.com/", std::nullopt, "CONNECT"},
      {"GET", "ftp://example.com/", std::nullopt, "not an absolute"},
      {"GET", "http://user:pw@example.com/", std::nullopt, "user information"},
      {"GET", "http://allowed.com@evil.com/", std::nullopt, "user information"},
      {"GET", "http://example.com/#frag", std::nullopt, "fragment"},
      {"GET", "http:///path", std::nullopt, "no host"},
      {"GET", "http://example.com:99999/", std::nullopt, "1 to 65535"},
      {"GET", "http://::1/", std::nullopt, "brackets"},
      // The Host header must name what the URL names.
      {"GET", "http://allowed.com/", "evil.com", "another destination"},
      {"GET", "http://allowed.com/", "allowed.com:8080", "another destination"},
      {"GET", "http://allowed.com:80/", "", "another destination"},
  };
  for (const auto& c : cases) {
    auto got = ParseProxyTarget(c.method, c.target, c.host);
    ASSERT_FALSE(got) << c.method << " " << c.target;
    EXPECT_NE(got.error().what.find(c.says), std::string::npos)
        << c.target << ": " << got.error().what;
  }
  // Control: the same URL with an agreeing Host header (explicit default port) is fine.
  EXPECT_TRUE(ParseProxyTarget("GET", "http://allowed.com/", "Allowed.COM:80"));
}

// ---- Stub DNS

void Put16(std::string& out, size_t v) {
  out += static_cast<char>((v >> 8) & 0xff);
  out += static_cast<char>(v & 0xff);
}

// A query as a resolver sends it: id 0x1234, RD, one question, optionally an EDNS OPT record.
std::string DnsQueryBytes(const std::vector<std::string>& labels, uint16_t type,
                          bool edns = false) {
  std::string q = std::string("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00", 11);
  q += static_cast<char>(edns ? 1 : 0);
  for (const std::string& l : labels) {
    q += static_cast<char>(l.size());
    q += l;
  }
  q += '\0';
  Put16(q, type);
  Put16(q, 1);
  if (edns) q += std::string("\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", 11);
  return q;
}

TEST(EgressDnsTest, ParsesAQueryAndKeepsTheQuestionAsSent) {
  auto q = ParseDnsQuery(DnsQueryBytes({"API", "Example", "com"}, 1, true));
  ASSERT_TRUE(q) << q.error().what;
  EXPECT_EQ(q->id, 0x1234);
  EXPECT_TRUE(q->recursion_desired);
  EXPECT_EQ(q->name, "api.example.com");
  EXPECT_EQ(q->type, 1);
  EXPECT_EQ(q->question, std::string("\x03"
                                     "API\x07"
                                     "Example\x03"
                                     "com\x00\x00\x01\x00\x01",
                                     21));
}

TEST(EgressDnsTest, AnswersParseWithTheSystemResolverLibrary) {
  auto q = ParseDnsQuery(DnsQueryBytes({"api", "example", "com"}, 1));
  ASSERT_TRUE(q);
  const std::string answer =
      BuildDnsAnswer(*q, DnsRcode::kNoError, std::string("\xc6\x12\x00\x07", 4), 30);
  ns_msg msg;
  ASSERT_EQ(ns_initparse(reinterpret_cast<const unsigned char*>(answer.data()),
                         static_cast<int>(answer.size()), &msg),
            0);
  EXPECT_EQ(ns_msg_id(msg), 0x1234);
  EXPECT_EQ(ns_msg_getflag(msg, ns_f_qr), 1);
  EXPECT_EQ(ns_msg_getflag(msg, ns_f_rcode), ns_r_noerror);
  ASSERT_EQ(ns_msg_count(msg, ns_s_an), 1);
  ns_rr rr;
  ASSERT_EQ(ns_parserr(&msg, ns_s_an, 0, &rr), 0);
  EXPECT_STREQ(ns_rr_name(rr), "api.example.com");
  EXPECT_EQ(ns_rr_type(rr), ns_t_a);
  EXPECT_EQ(ns_rr_ttl(rr), 30u);
  ASSERT_EQ(ns_rr_rdlen(rr), 4);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ns_rr_rdata(rr)), 4),
            std::string("\xc6\x12\x00\x07", 4));

  const std::string nx = BuildDnsAnswer(*q, DnsRcode::kNameError);
  ASSERT_EQ(ns_initparse(reinterpret_cast<const unsigned char*>(nx.data()),
                         static_cast<int>(nx.size()), &msg),
            0);
  EXPECT_EQ(ns_msg_getflag(msg, ns_f_rcode), ns_r_nxdomain);
  EXPECT_EQ(ns_msg_count(msg, ns_s_an), 0);
  // An address of the wrong size for the type is never written: NODATA instead.
  auto aaaa = ParseDnsQuery(DnsQueryBytes({"api", "example", "com"}, 28));
  ASSERT_TRUE(aaaa);
  const std::string nodata =
      BuildDnsAnswer(*aaaa, DnsRcode::kNoError, std::string("\xc6\x12\x00\x07", 4), 30);
  ASSERT_EQ(ns_initparse(reinterpret_cast<const unsigned char*>(nodata.data()),
                         static_cast<int>(nodata.size()), &msg),
            0);
  EXPECT_EQ(ns_msg_count(msg, ns_s_an), 0);
}

TEST(EgressDnsTest, RefusalsAndNamesThatAreNotHostNames) {
  std::string response = DnsQueryBytes({"a", "com"}, 1);
  response[2] = static_cast<char>(0x81);
  std::string two = DnsQueryBytes({"a", "com"}, 1);
  two[5] = 2;
  std::string compressed = DnsQueryBytes({"a", "com"}, 1);
  compressed[12] = static_cast<char>(0xc0);
  std::string truncated = DnsQueryBytes({"a", "com"}, 1);
  truncated.resize(truncated.size() - 3);
  std::string notify = DnsQueryBytes({"a", "com"}, 1);
  notify[2] = 0x21;  // opcode 4
  for (const std::string& bad : {std::string("\x12\x34", 2), response, two, compressed, truncated,
                                 notify, DnsQueryBytes({std::string(600, 'a')}, 1)}) {
    EXPECT_FALSE(ParseDnsQuery(bad));
  }
  // Parsed, but no host name: the caller answers NXDOMAIN.
  for (const std::vector<std::string>& labels :
       std::vector<std::vector<std::string>>{{"a.b", "com"},
                                             {std::string("a\0b", 3), "com"},
                                             {"a_b", "com"},
                                             {"10", "0", "0", "1"},
                                             {}}) {
    auto q = ParseDnsQuery(DnsQueryBytes(labels, 1));
    ASSERT_TRUE(q);
    EXPECT_EQ(q->name, "");
  }
}

// ---- ClientHello

std::string ServerNameExtension(const std::vector<std::string>& names, uint8_t type = 0) {
  std::string list;
  for (const std::string& n : names) {
    list += static_cast<char>(type);
    Put16(list, n.size());
    list += n;
  }
  std::string body;
  Put16(body, list.size());
  body += list;
  std::string ext;
  Put16(ext, 0);
  Put16(ext, body.size());
  return ext + body;
}

// A ClientHello carrying `extensions`, as one handshake message (no record header).
std::string Hello(const std::string& extensions, bool with_extensions = true) {
  std::string body;
  Put16(body, 0x0303);
  body += std::string(32, 'r');
  body += static_cast<char>(32);
  body += std::string(32, 's');
  Put16(body, 4);
  body += std::string("\x13\x01\x13\x02", 4);
  body += static_cast<char>(1);
  body += static_cast<char>(0);
  if (with_extensions) {
    Put16(body, extensions.size());
    body += extensions;
  }
  std::string msg;
  msg += static_cast<char>(1);
  msg += static_cast<char>((body.size() >> 16) & 0xff);
  Put16(msg, body.size() & 0xffff);
  return msg + body;
}

// `handshake` in TLS records of at most `max_record` bytes each.
std::string Records(const std::string& handshake, size_t max_record = 16384) {
  std::string out;
  for (size_t pos = 0; pos < handshake.size(); pos += max_record) {
    const std::string part = handshake.substr(pos, max_record);
    out += static_cast<char>(22);
    out += std::string("\x03\x01", 2);
    Put16(out, part.size());
    out += part;
  }
  return out;
}

std::string OtherExtension(uint16_t type, size_t size) {
  std::string ext;
  Put16(ext, type);
  Put16(ext, size);
  return ext + std::string(size, 'k');
}

TEST(EgressClientHelloTest, FindsTheName) {
  const std::string wire =
      Records(Hello(OtherExtension(10, 8) + ServerNameExtension({"API.Example.com."})));
  const ClientHelloName got = ReadClientHelloName(wire);
  ASSERT_EQ(got.status, ClientHelloName::Status::kFound) << got.error;
  EXPECT_EQ(got.name, "api.example.com");
  // Bytes after the ClientHello (early data, the next flight) do not matter.
  EXPECT_EQ(ReadClientHelloName(wire + "trailing").name, "api.example.com");
}

TEST(EgressClientHelloTest, EveryPrefixNeedsMoreAndSplitRecordsWork) {
  // A large hello (a post-quantum key share) split over records of 100 bytes.
  const std::string wire =
      Records(Hello(OtherExtension(51, 1400) + ServerNameExtension({"big.example.com"})), 100);
  for (size_t n = 0; n < wire.size(); ++n) {
    ASSERT_EQ(ReadClientHelloName(std::string_view(wire).substr(0, n)).status,
              ClientHelloName::Status::kNeedMore)
        << n;
  }
  EXPECT_EQ(ReadClientHelloName(wire).name, "big.example.com");
}

TEST(EgressClientHelloTest, AbsentNames) {
  EXPECT_EQ(ReadClientHelloName(Records(Hello(OtherExtension(10, 4)))).status,
            ClientHelloName::Status::kAbsent);
  EXPECT_EQ(ReadClientHelloName(Records(Hello("", false))).status,
            ClientHelloName::Status::kAbsent);
  EXPECT_EQ(ReadClientHelloName(Records(Hello(ServerNameExtension({"x.com"}, 7)))).status,
            ClientHelloName::Status::kAbsent);
}

TEST(EgressClientHelloTest, Malformed) {
  using S = ClientHelloName::Status;
  const auto status = [](const std::string& wire) { return ReadClientHelloName(wire).status; };
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), S::kMalformed);
  EXPECT_EQ(status(Records(Hello(ServerNameExtension({"a.com", "b.com"})))), S::kMalformed);
  EXPECT_EQ(status(Records(Hello(ServerNameExtension({"a.com"}) + ServerNameExtension({"b.com"})))),
            S::kMalformed);
  EXPECT_EQ(status(Records(Hello(ServerNameExtension({"10.0.0.1"})))), S::kMalformed);
  EXPECT_EQ(status(Records(Hello(ServerNameExtension({std::string("a\0.com", 6)})))),
            S::kMalformed);
  EXPECT_EQ(status(Records(Hello(ServerNameExtension({"evil.com\r\nHost: x"})))), S::kMalformed);
  // An extension length that runs past the list.
  std::string broken = Hello(ServerNameExtension({"a.com"}));
  broken[broken.size() - 12] = '\x7f';  // the server_name extension's length
  EXPECT_EQ(status(Records(broken)), S::kMalformed);
  // A record that is not a handshake after the first.
  std::string wire = Records(Hello(OtherExtension(51, 400) + ServerNameExtension({"a.com"})), 100);
  wire[105] = 23;
  EXPECT_EQ(status(wire), S::kMalformed);
  // A declared hello over 64 KiB is refused at once rather than waited for.
  std::string huge;
  huge += static_cast<char>(1);
  huge += static_cast<char>(2);  // 0x020000 = 128 KiB
  Put16(huge, 0);
  EXPECT_EQ(status(Records(huge + std::string(100, 'x'))), S::kMalformed);
}

// ---- Credential gateway upstream URLs (upstream_url.h).

TEST(EgressUpstreamUrlTest, CanonicalParts) {
  struct Case {
    const char* url;
    const char* host;
    uint16_t port;
    const char* prefix;
  };
  for (const Case& c : {
           Case{"https://api.anthropic.com", "api.anthropic.com", 443, ""},
           Case{"https://API.Anthropic.COM./", "api.anthropic.com", 443, ""},
           Case{"https://api.openai.com/v1", "api.openai.com", 443, "/v1"},
           Case{"https://api.openai.com/v1/", "api.openai.com", 443, "/v1"},
           Case{"https://a.example:8443/x/y%2Fz", "a.example", 8443, "/x/y%2Fz"},
           Case{"https://10.0.0.7:1", "10.0.0.7", 1, ""},
           Case{"https://[2001:DB8::1]:65535/v1", "2001:db8::1", 65535, "/v1"},
           Case{"https://[::ffff:1.2.3.4]", "1.2.3.4", 443, ""},
       }) {
    auto got = ParseUpstreamUrl(c.url);
    ASSERT_TRUE(got.has_value()) << c.url << ": " << got.error().ToString();
    EXPECT_EQ(got->host, c.host) << c.url;
    EXPECT_EQ(got->port, c.port) << c.url;
    EXPECT_EQ(got->path_prefix, c.prefix) << c.url;
    auto again = ParseUpstreamUrl(UpstreamUrlText(*got));
    ASSERT_TRUE(again.has_value()) << UpstreamUrlText(*got);
    EXPECT_EQ(again->host, got->host);
    EXPECT_EQ(again->port, got->port);
    EXPECT_EQ(again->path_prefix, got->path_prefix);
  }
  EXPECT_EQ(UpstreamHostHeader(ParseUpstreamUrl("https://a.example").value()), "a.example");
  EXPECT_EQ(UpstreamHostHeader(ParseUpstreamUrl("https://a.example:8443").value()),
            "a.example:8443");
  EXPECT_EQ(UpstreamHostHeader(ParseUpstreamUrl("https://[2001:db8::1]:444").value()),
            "[2001:db8::1]:444");
}

TEST(EgressUpstreamUrlTest, RefusalsNameWhatIsWrong) {
  const std::pair<std::string, const char*> bad[] = {
      {"http://api.anthropic.com", "https://"},
      {"HTTPS://api.anthropic.com", "https://"},
      {"api.anthropic.com", "https://"},
      {"https://", "no host"},
      {"https:///v1", "no host"},
      {"https://:443", "no host"},
      {"https://user:pw@api.anthropic.com", "userinfo"},
      {"https://api.anthropic.com@evil.com", "userinfo"},
      {"https://api.anthropic.com/v1?x=1", "query"},
      {"https://api.anthropic.com/v1#f", "fragment"},
      {"https://api.anthropic.com /v1", "space"},
      {"https://api.anthropic.com/v1\r\nX: y", "control"},
      {"https://api.anthropic.com\t", "control"},
      {"https://api%2eanthropic.com", "'%' in its host"},
      {"https://api.anthropic.com:0", "port"},
      {"https://api.anthropic.com:65536", "port"},
      {"https://api.anthropic.com:", "port"},
      {"https://api.anthropic.com:+443", "port"},
      {"https://api.anthropic.com:443:443", "more than one ':'"},
      {"https://2001:db8::1/v1", "brackets"},
      {"https://[2001:db8::1", "'['"},
      {"https://[api.anthropic.com]", "IPv6"},
      {"https://[1.2.3.4]", "IPv6"},
      {"https://[2001:db8::1]x", "after ']'"},
      {"https://[fe80::1%25eth0]", "'%' in its host"},
      {"https://a_b.example", "host name"},
      {"https://1.2.3", "numeric"},
      {"https://api.anthropic.com/v1//x", "segment"},
      {"https://api.anthropic.com//", "segment"},
      {"https://api.anthropic.com/../x", "segment"},
      {"https://api.anthropic.com/./x", "segment"},
      {"https://api.anthropic.com/%zz", "%HH"},
      {"https://api.anthropic.com/%4", "%HH"},
      {"https://api.anthropic.com/a\\b", "path"},
      {"https://api.anthropic.com/a@b", "path"},
      {"https://api.anthropic.com/" + std::string(2048, 'a'), "longer than 2048"},
      {"https://b\xc3\xbc"
       "cher.example",
       "non-ASCII"},
  };
  for (const auto& [url, why] : bad) {
    auto got = ParseUpstreamUrl(url);
    ASSERT_FALSE(got.has_value()) << url;
    EXPECT_NE(got.error().what.find(why), std::string::npos)
        << url << " -> " << got.error().what << " (want: " << why << ")";
  }
  // Control: the longest accepted.
  const std::string longest = "https://a.example/" + std::string(2048 - 18, 'a');
  ASSERT_EQ(longest.size(), kMaxUpstreamUrlBytes);
  EXPECT_TRUE(ParseUpstreamUrl(longest).has_value());
}

}  // namespace
}  // namespace mp::egress
