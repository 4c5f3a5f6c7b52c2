// Configuration of monkeyproof-api: every key of api.conf, sizes with K/M/G, ranges, error
// messages with their line numbers, listen lists (IPv4, [IPv6], localhost), LoadApiConfig with
// files in a mkdtemp directory under /tmp and environment overrides passed as a map, and the
// packaged example (packaging/api.conf) matching the built-in defaults. Runs as any user.
#include "http/api_config.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "config_example.h"

namespace mp::http {
namespace {

using Env = std::map<std::string, std::string>;

ApiConfig MustParse(const std::string& text) {
  auto r = ParseApiConfig(text, "api.conf");
  EXPECT_TRUE(r.has_value()) << r.error().ToString();
  return r.has_value() ? *r : ApiConfig{};
}

std::string ParseError(const std::string& text) {
  auto r = ParseApiConfig(text, "api.conf");
  EXPECT_FALSE(r.has_value()) << "parsed: " << text;
  return r.has_value() ? "" : r.error().what;
}

void ExpectDefaults(const ApiConfig& c) {
  const ApiConfig d;
  EXPECT_EQ(c.listen, d.listen);
  EXPECT_EQ(c.control_socket, d.control_socket);
  EXPECT_EQ(c.tokens.file, d.tokens.file);
  EXPECT_EQ(c.tokens.env_value, d.tokens.env_value);
  EXPECT_EQ(c.tokens.credential_dir, d.tokens.credential_dir);
  EXPECT_EQ(c.body_limit_bytes, d.body_limit_bytes);
  EXPECT_EQ(c.header_limit_bytes, d.header_limit_bytes);
  EXPECT_EQ(c.read_timeout_ms, d.read_timeout_ms);
  EXPECT_EQ(c.header_timeout_ms, d.header_timeout_ms);
  EXPECT_EQ(c.max_preauth_connections_per_address, d.max_preauth_connections_per_address);
  EXPECT_EQ(c.accept_rate_per_address, d.accept_rate_per_address);
  EXPECT_EQ(c.preauth_eviction, d.preauth_eviction);
  EXPECT_TRUE(d.preauth_eviction);
  EXPECT_EQ(c.max_connections_per_principal, d.max_connections_per_principal);
  EXPECT_EQ(c.max_unix_connections_per_uid, d.max_unix_connections_per_uid);
  EXPECT_EQ(c.idle_timeout_ms, d.idle_timeout_ms);
  EXPECT_EQ(c.max_connections, d.max_connections);
  EXPECT_EQ(c.ws_outbox_bytes, d.ws_outbox_bytes);
  EXPECT_EQ(c.transcript_max_bytes, d.transcript_max_bytes);
  EXPECT_EQ(c.auth_failures_per_minute, d.auth_failures_per_minute);
  EXPECT_EQ(c.token_max_ttl_seconds, d.token_max_ttl_seconds);
  EXPECT_EQ(c.max_scoped_tokens, d.max_scoped_tokens);
  EXPECT_TRUE(c.trusted_proxies.empty());
  EXPECT_EQ(c.forwarded_header, d.forwarded_header);
  EXPECT_EQ(c.tls, d.tls);
  EXPECT_TRUE(c.tls.listen.empty());  // no TLS unless asked for
  EXPECT_EQ(c.ws_auth_timeout_ms, d.ws_auth_timeout_ms);
}

TEST(ApiConfigTest, Defaults) {
  const ApiConfig c;
  EXPECT_EQ(c.listen, (std::vector<ListenAddress>{{"127.0.0.1", 3200}}));
  EXPECT_EQ(c.tokens.file, kDefaultTokenFile);
  EXPECT_EQ(c.tokens.file, "/etc/monkeyproof/api-token");
  EXPECT_TRUE(c.tokens.env_value.empty());
  EXPECT_TRUE(c.tokens.credential_dir.empty());
}

TEST(ApiConfigTest, EmptyTextAndCommentsGiveTheDefaults) {
  ExpectDefaults(MustParse(""));
  ExpectDefaults(MustParse("# nothing\n\n   \n\t# indented comment\r\n"));
}

TEST(ApiConfigTest, EveryKey) {
  const ApiConfig c = MustParse(
      "listen = 0.0.0.0:8080, [::1]:8081\n"
      "control_socket = /run/mp/ctl.sock\n"
      "token_file = /etc/mp/token\n"
      "body_limit_bytes = 2M\n"
      "header_limit_bytes = 32K\n"
      "read_timeout_ms = 5000\n"
      "header_timeout_ms = 2500\n"
      "max_preauth_connections_per_address = 9\n"
      "accept_rate_per_address = 0\n"
      "preauth_eviction = off\n"
      "idle_timeout_ms = 60000\n"
      "max_connections = 77\n"
      "ws_outbox_bytes = 512K\n"
      "transcript_max_bytes = 128M\n"
      "auth_failures_per_minute = 5\n"
      "trusted_proxies = 127.0.0.1, 10.0.0.0/8\n"
      "forwarded_header = Forwarded\n");
  EXPECT_EQ(c.listen, (std::vector<ListenAddress>{{"0.0.0.0", 8080}, {"::1", 8081}}));
  EXPECT_EQ(c.control_socket, "/run/mp/ctl.sock");
  EXPECT_EQ(c.tokens.file, "/etc/mp/token");
  EXPECT_EQ(c.body_limit_bytes, 2u * 1024 * 1024);
  EXPECT_EQ(c.header_limit_bytes, 32u * 1024);
  EXPECT_EQ(c.read_timeout_ms, 5000u);
  EXPECT_EQ(c.header_timeout_ms, 2500u);
  EXPECT_EQ(c.max_preauth_connections_per_address, 9u);
  EXPECT_EQ(c.accept_rate_per_address, 0u);
  EXPECT_FALSE(c.preauth_eviction);
  EXPECT_EQ(c.idle_timeout_ms, 60000u);
  EXPECT_EQ(c.max_connections, 77u);
  EXPECT_EQ(c.ws_outbox_bytes, 512u * 1024);
  EXPECT_EQ(c.transcript_max_bytes, 128u * 1024 * 1024);
  EXPECT_EQ(c.auth_failures_per_minute, 5u);
  ASSERT_EQ(c.trusted_proxies.size(), 2u);
  EXPECT_EQ(c.trusted_proxies[1].base.ToString(), "10.0.0.0");
  EXPECT_EQ(c.trusted_proxies[1].prefix, 8u);
  EXPECT_EQ(c.forwarded_header, ForwardedHeader::kForwarded);
}

TEST(ApiConfigTest, UnixSocketKeys) {
  EXPECT_EQ(ApiConfig().unix_socket, UnixListenConfig{});
  EXPECT_EQ(ApiConfig().unix_socket.mode, 0660u);
  const ApiConfig c = MustParse(
      "listen_unix = /run/monkeyproof-api/api.sock\nlisten_unix_mode = 0600\n"
      "listen_unix_group = operators\n");
  EXPECT_EQ(c.unix_socket.path, "/run/monkeyproof-api/api.sock");
  EXPECT_EQ(c.unix_socket.mode, 0600u);
  EXPECT_EQ(c.unix_socket.group, "operators");
  EXPECT_EQ(ApiConfig().max_unix_connections_per_uid, 64u);
  EXPECT_EQ(MustParse("max_unix_connections_per_uid = 3\n").max_unix_connections_per_uid, 3u);
  EXPECT_EQ(MustParse("max_unix_connections_per_uid = 0\n").max_unix_connections_per_uid, 0u);
  EXPECT_EQ(MustParse("listen_unix_mode = 660\n").unix_socket.mode, 0660u);
  const std::string long_path = "/" + std::string(107, 'a');
  for (const std::string& bad :
       {std::string("listen_unix = api.sock"), "listen_unix = " + long_path,
        std::string("listen_unix_mode = 0680"), std::string("listen_unix_mode = 10660"),
        std::string("listen_unix_mode = rw")}) {
    auto r = ParseApiConfig(bad, "api.conf");
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().what.find("api.conf:1: listen_unix"), std::string::npos)
        << r.error().ToString();
  }
  EXPECT_TRUE(ParseApiConfig("listen_unix = /" + std::string(106, 'a'), "api.conf"));
}

TEST(ApiConfigTest, TrustedProxiesAndForwardedHeaderErrors) {
  EXPECT_EQ(ParseError("trusted_proxies = 10.0.0.1/8\n"),
            "api.conf:1: trusted_proxies: \"10.0.0.1/8\": host bits are set below the prefix; "
            "write 10.0.0.0/8");
  EXPECT_EQ(ParseError("trusted_proxies = proxy.lan\n"),
            "api.conf:1: trusted_proxies: \"proxy.lan\": not an IPv4 or IPv6 address (a network "
            "is address/bits)");
  EXPECT_EQ(ParseError("\nforwarded_header = x-real-ip\n"),
            "api.conf:2: forwarded_header: \"x-real-ip\" is neither x-forwarded-for nor "
            "forwarded (the header your proxy sets)");
  EXPECT_TRUE(MustParse("trusted_proxies =\n").trusted_proxies.empty());
  EXPECT_EQ(ParseError("preauth_eviction = yes\n"),
            "api.conf:1: preauth_eviction: \"yes\" is not on or off");
  EXPECT_TRUE(MustParse("preauth_eviction = on\n").preauth_eviction);
}

TEST(ApiConfigTest, WhitespaceAroundKeysAndValues) {
  const ApiConfig c = MustParse("  auth_failures_per_minute=2  \r\n\tmax_connections =\t9\n");
  EXPECT_EQ(c.auth_failures_per_minute, 2u);
  EXPECT_EQ(c.max_connections, 9u);
}

TEST(ApiConfigTest, SizesTakeKMGSuffixesInPowersOf1024) {
  EXPECT_EQ(MustParse("body_limit_bytes = 1024").body_limit_bytes, 1024u);
  EXPECT_EQ(MustParse("body_limit_bytes = 1k").body_limit_bytes, 1024u);
  EXPECT_EQ(MustParse("body_limit_bytes = 3K").body_limit_bytes, 3u * 1024);
  EXPECT_EQ(MustParse("body_limit_bytes = 64M").body_limit_bytes, 64u * 1024 * 1024);
  EXPECT_EQ(MustParse("body_limit_bytes = 65536k").body_limit_bytes, 64u * 1024 * 1024);
  EXPECT_EQ(MustParse("transcript_max_bytes = 256m").transcript_max_bytes, 256u * 1024 * 1024);
  EXPECT_EQ(MustParse("ws_outbox_bytes = 64K").ws_outbox_bytes, 64u * 1024);
  EXPECT_EQ(MustParse("header_limit_bytes = 1M").header_limit_bytes, 1024u * 1024);

  for (const char* bad : {"1KB", "1.5M", "M", "-1K", "1 K", "K1", "0x400", "", "1T"}) {
    const std::string e = ParseError(std::string("body_limit_bytes = ") + bad);
    EXPECT_NE(e.find("api.conf:1: body_limit_bytes: "), std::string::npos) << e;
    EXPECT_NE(e.find("is not a size"), std::string::npos) << e;
  }
  // An overflowing multiplication is not a size.
  EXPECT_NE(ParseError("body_limit_bytes = 18014398509481984K").find("is not a size"),
            std::string::npos);
  // Timeouts and counts take no suffix.
  EXPECT_NE(ParseError("read_timeout_ms = 1K").find("is not a number"), std::string::npos);
  EXPECT_NE(ParseError("auth_failures_per_minute = 2k").find("is not a number"), std::string::npos);
}

TEST(ApiConfigTest, RangesOfEveryNumericKey) {
  struct Case {
    const char* key;
    const char* lowest;
    const char* below;
    const char* highest;
    const char* above;
    const char* range;
  };
  const Case cases[] = {
      {"body_limit_bytes", "1K", "1023", "64M", "67108865", "(1K..64M bytes)"},
      {"header_limit_bytes", "1024", "1023", "1M", "1048577", "(1K..1M bytes)"},
      {"read_timeout_ms", "100", "99", "86400000", "86400001", "(100..86400000)"},
      {"header_timeout_ms", "100", "99", "86400000", "86400001", "(100..86400000)"},
      {"max_preauth_connections_per_address", "0", "100001", "100000", "100001", "(0..100000)"},
      {"accept_rate_per_address", "0", "1000001", "1000000", "1000001", "(0..1000000)"},
      {"max_connections_per_principal", "0", "100001", "100000", "100001", "(0..100000)"},
      {"max_unix_connections_per_uid", "0", "100001", "100000", "100001", "(0..100000)"},
      {"idle_timeout_ms", "100", "0", "86400000", "99999999999", "(100..86400000)"},
      {"max_connections", "1", "0", "100000", "100001", "(1..100000)"},
      {"ws_outbox_bytes", "64K", "65535", "256M", "268435457", "(64K..256M bytes)"},
      {"transcript_max_bytes", "65536", "63K", "256M", "1G", "(64K..256M bytes)"},
      {"auth_failures_per_minute", "1", "0", "100000", "100001", "(1..100000)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    const std::string k = c.key;
    EXPECT_TRUE(ParseApiConfig(k + " = " + c.lowest, "x").has_value());
    EXPECT_TRUE(ParseApiConfig(k + " = " + c.highest, "x").has_value());
    for (const char* v : {c.below, c.above}) {
      const std::string e = ParseError("# comment\n\n" + k + " = " + v);
      EXPECT_EQ(e, "api.conf:3: " + k + ": " + v + " is out of range " + c.range);
    }
    const std::string e = ParseError(k + " = many");
    EXPECT_NE(e.find("api.conf:1: " + k + ": \"many\" is not a"), std::string::npos) << e;
  }
}

TEST(ApiConfigTest, SyntaxErrorsNameTheLine) {
  EXPECT_EQ(ParseError("auth_failures_per_minute = 2\nauth_failures_per_minute 3\n"),
            "api.conf:2: expected key = value");
  EXPECT_EQ(ParseError("= 3\n"), "api.conf:1: expected key = value");
  EXPECT_EQ(ParseError("\n\n\nlisen = 127.0.0.1:80\n"), "api.conf:4: lisen: unknown key");
  EXPECT_EQ(ParseError("auth_failures_per_minute = 2\n# x\nauth_failures_per_minute = 3\n"),
            "api.conf:3: auth_failures_per_minute: set twice (first on line 1)");
  EXPECT_EQ(ParseError("THREADS = 2"), "api.conf:1: THREADS: unknown key");
  // A value with a trailing comment is not a number: comments take the whole line.
  EXPECT_EQ(ParseError("auth_failures_per_minute = 2 # two"),
            "api.conf:1: auth_failures_per_minute: \"2 # two\" is not a number");
}

TEST(ApiConfigTest, OriginNamesTheFile) {
  auto r = ParseApiConfig("bogus = 1", "/etc/monkeyproof/api.conf");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().what, "/etc/monkeyproof/api.conf:1: bogus: unknown key");
}

TEST(ApiConfigTest, PathsMustBeAbsolute) {
  EXPECT_EQ(ParseError("control_socket = run/ctl.sock"),
            "api.conf:1: control_socket: \"run/ctl.sock\" is not an absolute path");
  EXPECT_EQ(ParseError("control_socket ="),
            "api.conf:1: control_socket: \"\" is not an absolute path");
  EXPECT_EQ(ParseError("token_file = token"),
            "api.conf:1: token_file: \"token\" is not an absolute path");
  // An empty token_file turns the file source off.
  EXPECT_EQ(MustParse("token_file =").tokens.file, "");
}

TEST(ApiConfigTest, ListenLists) {
  EXPECT_EQ(MustParse("listen = 127.0.0.1:3200").listen,
            (std::vector<ListenAddress>{{"127.0.0.1", 3200}}));
  EXPECT_EQ(MustParse("listen = localhost:80").listen,
            (std::vector<ListenAddress>{{"127.0.0.1", 80}}));
  EXPECT_EQ(MustParse("listen = [::]:443,10.1.2.3:65535 ,  [fe80::1:2]:1").listen,
            (std::vector<ListenAddress>{{"::", 443}, {"10.1.2.3", 65535}, {"fe80::1:2", 1}}));
  std::string e = ParseError("listen = 127.0.0.1:80, 127.0.0.1:80");
  EXPECT_EQ(e, "api.conf:1: listen: \"127.0.0.1:80\" is listed twice");
  // Spelled differently, the same address is still a duplicate.
  e = ParseError("listen = [::1]:80, [0:0:0:0:0:0:0:1]:80");
  EXPECT_NE(e.find("is listed twice"), std::string::npos) << e;
  e = ParseError("listen = 127.0.0.1:80,");
  EXPECT_EQ(e, "api.conf:1: listen: empty address in the list");
  e = ParseError("listen =");
  EXPECT_EQ(e, "api.conf:1: listen: empty address in the list");
  e = ParseError("\nlisten = 127.0.0.1:80, nohost");
  EXPECT_EQ(e, "api.conf:2: listen: \"nohost\": expected address:port");
  std::string many = "listen = ";
  for (int i = 1; i <= 17; ++i) many += (i > 1 ? "," : "") + ("127.0.0.1:" + std::to_string(i));
  EXPECT_NE(ParseError(many).find("more than 16 addresses"), std::string::npos);
}

TEST(ApiConfigTest, TlsKeys) {
  const std::string files =
      "tls_cert = /etc/monkeyproof/tls/cert.pem\ntls_key = /etc/monkeyproof/tls/key.pem\n";
  ApiConfig c = MustParse("tls_listen = 0.0.0.0:3443, [::]:3443\n" + files);
  EXPECT_EQ(c.tls.listen, (std::vector<ListenAddress>{{"0.0.0.0", 3443}, {"::", 3443}}));
  EXPECT_EQ(c.tls.cert_file, "/etc/monkeyproof/tls/cert.pem");
  EXPECT_EQ(c.tls.key_file, "/etc/monkeyproof/tls/key.pem");
  EXPECT_EQ(c.tls.client_certs, ClientCerts::kNone);
  EXPECT_EQ(c.listen, ApiConfig{}.listen);  // the plain loopback listener stays

  // A client CA alone means certificates are required; optional and none are said so.
  const std::string ca = "tls_client_ca = /etc/monkeyproof/tls/clients.pem\n";
  c = MustParse("tls_listen = 0.0.0.0:3443\n" + files + ca);
  EXPECT_EQ(c.tls.client_ca_file, "/etc/monkeyproof/tls/clients.pem");
  EXPECT_EQ(c.tls.client_certs, ClientCerts::kRequired);
  EXPECT_EQ(MustParse("tls_listen = 0.0.0.0:3443\n" + files + ca + "tls_client_certs = optional")
                .tls.client_certs,
            ClientCerts::kOptional);
  EXPECT_EQ(MustParse("tls_listen = 0.0.0.0:3443\n" + files + ca + "tls_client_certs = none")
                .tls.client_certs,
            ClientCerts::kNone);
  EXPECT_EQ(ParseError("tls_client_certs = always"),
            "api.conf:1: tls_client_certs: \"always\" is not none, optional or required");
  EXPECT_EQ(ParseError("tls_cert = cert.pem"),
            "api.conf:1: tls_cert: \"cert.pem\" is not an absolute path");
}

TEST(ApiConfigTest, TlsKeysThatDoNotGoTogether) {
  const std::string files =
      "tls_cert = /etc/monkeyproof/tls/cert.pem\ntls_key = /etc/monkeyproof/tls/key.pem\n";
  EXPECT_NE(ParseError("tls_listen = 0.0.0.0:3443\ntls_cert = /c.pem")
                .find("tls_listen needs tls_cert and tls_key"),
            std::string::npos);
  EXPECT_NE(ParseError(files).find("tls_listen is empty: no address would use them"),
            std::string::npos);
  EXPECT_NE(ParseError("tls_listen = 0.0.0.0:3443\n" + files + "tls_client_certs = required")
                .find("tls_client_certs needs tls_client_ca"),
            std::string::npos);
  const std::string both =
      ParseError("listen = 127.0.0.1:3200\ntls_listen = localhost:3200\n" + files);
  EXPECT_NE(both.find("127.0.0.1:3200 is in both listen and tls_listen"), std::string::npos)
      << both;
  std::string many = "tls_listen = ";
  for (int i = 1; i <= 16; ++i) many += (i > 1 ? "," : "") + ("127.0.0.2:" + std::to_string(i));
  EXPECT_NE(
      ParseError(many + "\n" + files).find("listen and tls_listen together have more than 16"),
      std::string::npos);
}

TEST(ListenAddressTest, Accepted) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  };
  const Case cases[] = {
      {"127.0.0.1:3200", "127.0.0.1", 3200},
      {"0.0.0.0:1", "0.0.0.0", 1},
      {"localhost:3200", "127.0.0.1", 3200},
      {"[::1]:3200", "::1", 3200},
      {"[::]:80", "::", 80},
      {"[2001:DB8::1]:8443", "2001:db8::1", 8443},
      {"[::ffff:127.0.0.1]:9", "::ffff:127.0.0.1", 9},
      {"255.255.255.255:65535", "255.255.255.255", 65535},
  };
  for (const Case& c : cases) {
    auto r = ParseListenAddress(c.text);
    ASSERT_TRUE(r.has_value()) << c.text << ": " << r.error().ToString();
    EXPECT_EQ(r->host, c.host) << c.text;
    EXPECT_EQ(r->port, c.port) << c.text;
  }
}

TEST(ListenAddressTest, Refused) {
  struct Case {
    const char* text;
    const char* reason;
  };
  const Case cases[] = {
      {":3200", "the address is required"},
      {"127.0.0.1", "expected address:port"},
      {"", "expected address:port"},
      {"127.0.0.1:", "is not 1..65535"},
      {"127.0.0.1:0", "is not 1..65535"},
      {"127.0.0.1:65536", "is not 1..65535"},
      {"127.0.0.1:-1", "is not 1..65535"},
      {"127.0.0.1:80x", "is not 1..65535"},
      {"127.0.0.1: 80", "is not 1..65535"},
      {"::1:3200", "needs brackets"},
      {"[::1]3200", "expected [address]:port"},
      {"[::1]", "expected [address]:port"},
      {"[::1:3200", "missing ']'"},
      {"[]:3200", "is not an IPv6 address"},
      {"[127.0.0.1]:3200", "is not an IPv6 address"},
      {"[fe80::1%eth0]:80", "is not an IPv6 address"},
      {"256.0.0.1:80", "is not an IPv4 address"},
      {"1.2.3:80", "is not an IPv4 address"},
      {"010.0.0.1:80", "is not an IPv4 address"},
      {"example.com:80", "is not an IPv4 address"},
      {"LOCALHOST:80", "is not an IPv4 address"},
      {" 127.0.0.1:80", "is not an IPv4 address"},
  };
  for (const Case& c : cases) {
    auto r = ParseListenAddress(c.text);
    ASSERT_FALSE(r.has_value()) << c.text;
    EXPECT_NE(r.error().what.find(c.reason), std::string::npos)
        << c.text << " -> " << r.error().what;
    EXPECT_NE(r.error().what.find(std::string("\"") + c.text + "\""), std::string::npos)
        << r.error().what;
  }
}

TEST(LoadApiConfigTest, MissingFile) {
  test::TempDir dir("mp-http-config-test");
  const std::string path = dir.path() + "/api.conf";
  auto optional = LoadApiConfig(path, true, {});
  ASSERT_TRUE(optional.has_value()) << optional.error().ToString();
  ExpectDefaults(*optional);

  auto required = LoadApiConfig(path, false, {});
  ASSERT_FALSE(required.has_value());
  EXPECT_EQ(required.error().errnum, ENOENT);
  EXPECT_EQ(required.error().what, "open(config \"" + path + "\")");
}

TEST(LoadApiConfigTest, ADirectoryIsNotAConfigEvenWhenOptional) {
  test::TempDir dir("mp-http-config-test");
  auto r = LoadApiConfig(dir.path(), true, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum, EISDIR);
}

TEST(LoadApiConfigTest, ReadsTheFileAndNamesItInErrors) {
  test::TempDir dir("mp-http-config-test");
  const std::string path =
      dir.Write("api.conf", "auth_failures_per_minute = 3\nlisten = [::1]:9000\n");
  auto r = LoadApiConfig(path, false, {});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->auth_failures_per_minute, 3u);
  EXPECT_EQ(r->listen, (std::vector<ListenAddress>{{"::1", 9000}}));

  const std::string bad =
      dir.Write("bad.conf", "auth_failures_per_minute = 3\nauth_failures_per_minute = 4\n");
  auto e = LoadApiConfig(bad, true, {});
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().what, bad + ":2: auth_failures_per_minute: set twice (first on line 1)");
}

TEST(LoadApiConfigTest, PortOverridesListen) {
  test::TempDir dir("mp-http-config-test");
  const std::string path = dir.Write("api.conf", "listen = [::]:80, 0.0.0.0:80\n");
  auto r = LoadApiConfig(path, false, {{"PORT", "4000"}});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->listen, (std::vector<ListenAddress>{{"127.0.0.1", 4000}}));

  for (const char* bad : {"0", "65536", "abc", "", "-1", "80 "}) {
    auto e = LoadApiConfig(path, false, {{"PORT", bad}});
    ASSERT_FALSE(e.has_value()) << bad;
    EXPECT_EQ(e.error().what,
              std::string("environment PORT=\"") + bad + "\" is not a port (1..65535)");
  }
}

TEST(LoadApiConfigTest, MonkeyproofListenWinsOverPort) {
  auto r = LoadApiConfig("/nonexistent/api.conf", true,
                         {{"PORT", "4000"}, {"MONKEYPROOF_LISTEN", "[::1]:5000, 127.0.0.1:5001"}});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->listen, (std::vector<ListenAddress>{{"::1", 5000}, {"127.0.0.1", 5001}}));

  auto e = LoadApiConfig("/nonexistent/api.conf", true, {{"MONKEYPROOF_LISTEN", ":5000"}});
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().what.find("environment MONKEYPROOF_LISTEN: \":5000\""), std::string::npos)
      << e.error().what;
}

TEST(LoadApiConfigTest, TlsListenFromTheEnvironment) {
  test::TempDir dir("mp-http-config-test");
  const std::string path = dir.Write(
      "api.conf", "tls_listen = 0.0.0.0:3443\ntls_cert = /tls/cert.pem\ntls_key = /tls/key.pem\n");
  auto r = LoadApiConfig(path, false, {{"MONKEYPROOF_TLS_LISTEN", "127.0.0.1:4443"}});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->tls.listen, (std::vector<ListenAddress>{{"127.0.0.1", 4443}}));
  EXPECT_EQ(r->tls.cert_file, "/tls/cert.pem");
  // Empty: TLS off, its files forgotten.
  r = LoadApiConfig(path, false, {{"MONKEYPROOF_TLS_LISTEN", ""}});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->tls, TlsConfig{});
  // Without tls_cert, a TLS address from the environment is refused.
  auto e = LoadApiConfig("/nonexistent/api.conf", true, {{"MONKEYPROOF_TLS_LISTEN", "[::1]:1"}});
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().what.find("tls_listen needs tls_cert and tls_key"), std::string::npos);
  // PORT may land on the TLS address: refused, naming both keys.
  e = LoadApiConfig(path, false, {{"PORT", "3443"}, {"MONKEYPROOF_TLS_LISTEN", "127.0.0.1:3443"}});
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().what.find("is in both listen and tls_listen"), std::string::npos)
      << e.error().what;
}

TEST(LoadApiConfigTest, ControlSocketFromTheEnvironment) {
  auto r = LoadApiConfig("/nonexistent/api.conf", true,
                         {{"MONKEYPROOF_CONTROL_SOCKET", "/tmp/x/control.sock"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->control_socket, "/tmp/x/control.sock");
  auto e = LoadApiConfig("/nonexistent/api.conf", true, {{"MONKEYPROOF_CONTROL_SOCKET", "x"}});
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().what, "environment MONKEYPROOF_CONTROL_SOCKET=\"x\" is not an absolute path");
}

TEST(LoadApiConfigTest, TokenVariables) {
  const std::string a(40, 'a');
  const std::string b(40, 'b');
  auto only_agent = LoadApiConfig("/nonexistent/api.conf", true, {{"AGENT_WS_TOKEN", a}});
  ASSERT_TRUE(only_agent.has_value());
  EXPECT_EQ(only_agent->tokens.env_value, a);

  auto both = LoadApiConfig("/nonexistent/api.conf", true,
                            {{"AGENT_WS_TOKEN", a}, {"MONKEYPROOF_TOKEN", b}});
  ASSERT_TRUE(both.has_value());
  EXPECT_EQ(both->tokens.env_value, b);

  // An empty MONKEYPROOF_TOKEN counts as unset.
  auto empty_mp = LoadApiConfig("/nonexistent/api.conf", true,
                                {{"AGENT_WS_TOKEN", a}, {"MONKEYPROOF_TOKEN", ""}});
  ASSERT_TRUE(empty_mp.has_value());
  EXPECT_EQ(empty_mp->tokens.env_value, a);

  auto none = LoadApiConfig("/nonexistent/api.conf", true, {});
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->tokens.env_value, "");
  EXPECT_EQ(none->tokens.file, kDefaultTokenFile);
  EXPECT_EQ(none->tokens.credential_dir, "");
}

TEST(LoadApiConfigTest, TokenFileAndCredentialsDirectory) {
  test::TempDir dir("mp-http-config-test");
  const std::string path = dir.Write("api.conf", "token_file = /etc/mp/from-file\n");
  auto from_file = LoadApiConfig(path, false, {});
  ASSERT_TRUE(from_file.has_value());
  EXPECT_EQ(from_file->tokens.file, "/etc/mp/from-file");

  auto r = LoadApiConfig(path, false,
                         {{"MONKEYPROOF_TOKEN_FILE", "/run/secrets/token"},
                          {"CREDENTIALS_DIRECTORY", "/run/credentials/monkeyproof-api.service"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->tokens.file, "/run/secrets/token");
  EXPECT_EQ(r->tokens.credential_dir, "/run/credentials/monkeyproof-api.service");

  auto off = LoadApiConfig(path, false, {{"MONKEYPROOF_TOKEN_FILE", ""}});
  ASSERT_TRUE(off.has_value());
  EXPECT_EQ(off->tokens.file, "");

  auto e = LoadApiConfig(path, false, {{"MONKEYPROOF_TOKEN_FILE", "rel/token"}});
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().what,
            "environment MONKEYPROOF_TOKEN_FILE=\"rel/token\" is not an "
            "absolute path");
}

TEST(LoadApiConfigTest, FileErrorsComeBeforeTheEnvironment) {
  test::TempDir dir("mp-http-config-test");
  const std::string path = dir.Write("api.conf", "auth_failures_per_minute = 0\n");
  auto r = LoadApiConfig(path, false, {{"PORT", "4000"}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().what, path + ":1: auth_failures_per_minute: 0 is out of range (1..100000)");
}

TEST(LoadApiConfigTest, TokenStoreFromStateDirectoryFileOrEnvironment) {
  test::TempDir dir("api-config-store");
  const std::string none = dir.Write("none.conf", "");
  auto r = LoadApiConfig(none, false, {});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->token_store, "");  // disabled without a home
  r = LoadApiConfig(none, false, {{"STATE_DIRECTORY", "/var/lib/monkeyproof-api:/var/lib/x"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token_store, "/var/lib/monkeyproof-api/tokens.json");
  // The file's key wins over STATE_DIRECTORY, even empty (disabled).
  const std::string off = dir.Write("off.conf", "token_store =\n");
  r = LoadApiConfig(off, false, {{"STATE_DIRECTORY", "/var/lib/monkeyproof-api"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token_store, "");
  const std::string set = dir.Write("set.conf", "token_store = /srv/t.json\n");
  r = LoadApiConfig(set, false, {{"STATE_DIRECTORY", "/var/lib/monkeyproof-api"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token_store, "/srv/t.json");
  // The environment wins over both.
  r = LoadApiConfig(set, false, {{"MONKEYPROOF_TOKEN_STORE", "/run/t.json"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token_store, "/run/t.json");
  EXPECT_FALSE(LoadApiConfig(set, false, {{"MONKEYPROOF_TOKEN_STORE", "t.json"}}));
  EXPECT_FALSE(ParseApiConfig("token_store = relative.json", "api.conf"));
  EXPECT_FALSE(ParseApiConfig("token_max_ttl_seconds = 59", "api.conf"));
  EXPECT_FALSE(ParseApiConfig("token_max_ttl_seconds = 31622401", "api.conf"));
  EXPECT_FALSE(ParseApiConfig("max_scoped_tokens = 0", "api.conf"));
  EXPECT_FALSE(ParseApiConfig("max_scoped_tokens = 100001", "api.conf"));
  auto keys = ParseApiConfig("token_max_ttl_seconds = 3600\nmax_scoped_tokens = 5\n", "api.conf");
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->token_max_ttl_seconds, 3600u);
  EXPECT_EQ(keys->max_scoped_tokens, 5u);
}

// packaging/api.conf lists every key, commented out, with its default: uncommenting every
// `# key = value` line must parse and give exactly the built-in defaults.
TEST(PackagedExampleTest, EveryKeyWithItsDefault) {
  const test::UncommentedExample example = test::UncommentExample(MP_API_CONF_EXAMPLE);
  EXPECT_EQ(example.keys, (std::set<std::string>{"listen",
                                                 "control_socket",
                                                 "token_file",
                                                 "body_limit_bytes",
                                                 "header_limit_bytes",
                                                 "read_timeout_ms",
                                                 "idle_timeout_ms",
                                                 "max_connections",
                                                 "ws_outbox_bytes",
                                                 "transcript_max_bytes",
                                                 "auth_failures_per_minute",
                                                 "auth_failures_per_minute",
                                                 "token_store",
                                                 "token_max_ttl_seconds",
                                                 "max_scoped_tokens",
                                                 "trusted_proxies",
                                                 "forwarded_header",
                                                 "header_timeout_ms",
                                                 "max_preauth_connections_per_address",
                                                 "accept_rate_per_address",
                                                 "preauth_eviction",
                                                 "max_connections_per_principal",
                                                 "ws_auth_timeout_ms",
                                                 "listen_unix",
                                                 "listen_unix_mode",
                                                 "listen_unix_group",
                                                 "max_unix_connections_per_uid"}));
  auto r = ParseApiConfig(example.text, "api.conf (uncommented)");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ExpectDefaults(*r);
  // The example shows the package's token_store: STATE_DIRECTORY's tokens.json.
  EXPECT_EQ(r->token_store, "/var/lib/monkeyproof-api/tokens.json");
}

}  // namespace
}  // namespace mp::http
