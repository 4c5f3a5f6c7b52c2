// The shared `key = value` reader (common/kv_config.h): line syntax, comments, repeated and
// unknown keys, numbers, sizes and ranges, as tables of text -> field values or the exact
// error; then ReadConfigText on files in a mkdtemp directory, and the three config files
// (supervisor, API, CLI) refusing a repeated key the same way. Runs as any user.
#include "common/kv_config.h"
#include "temp_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cli/config.h"
#include "http/api_config.h"
#include "supervisor/config.h"

namespace mp::common {
namespace {

// One schema with a key of every kind.
struct Fields {
  std::string name = "default";
  std::string path = "/default";
  std::string optional_path = "/default";
  uint64_t count = 7;
  uint32_t small = 7;
  uint64_t bytes = 7;
  uint32_t small_bytes = 7;
  std::string custom;
};

KvSchema MakeSchema(Fields& f) {
  KvSchema s;
  s.String("name", &f.name)
      .Path("path", &f.path)
      .Path("optional_path", &f.optional_path, /*empty_ok=*/true)
      .Number("count", &f.count, 1)
      .Number("small", &f.small, 10, 20)
      .Size("bytes", &f.bytes, kKiB, 64 * kMiB)
      .Size("small_bytes", &f.small_bytes)
      .Custom("custom", [&f](std::string_view v) -> Result<void> {
        if (v == "bad") return PlainError("custom says no");
        f.custom = v;
        return Ok();
      });
  return s;
}

Fields MustParse(const std::string& text) {
  Fields f;
  const Result<void> r = MakeSchema(f).Parse(text, "t.conf");
  EXPECT_TRUE(r) << text << " -> " << r.error().what;
  return f;
}

std::string ErrorOf(const std::string& text) {
  Fields f;
  const Result<void> r = MakeSchema(f).Parse(text, "t.conf");
  EXPECT_FALSE(r) << "parsed: " << text;
  return r ? "" : r.error().what;
}

TEST(KvConfigTest, LinesCommentsAndBlanks) {
  struct Case {
    const char* text;
    const char* name;
  };
  const Case cases[] = {
      {"", "default"},
      {"# name = x\n\n   \n\t# indented comment\r\n", "default"},
      {"name = x", "x"},
      {"name=x\n", "x"},
      {"  name \t=\t x y  \r\n", "x y"},  // inner blanks kept, outer trimmed
      {"name = a=b", "a=b"},              // the first '=' splits
      {"name = x # not a comment", "x # not a comment"},
      {"name =", ""},
      {"\f\vname = x\f", "x"},
      {"name = \"q\"", "\"q\""},  // quotes are the caller's business (Unquote)
  };
  for (const Case& c : cases) {
    EXPECT_EQ(MustParse(c.text).name, c.name) << c.text;
  }
}

TEST(KvConfigTest, EveryKind) {
  const Fields f = MustParse(
      "name = n\npath = /p\noptional_path =\ncount = 18446744073709551615\nsmall = 20\n"
      "bytes = 2M\nsmall_bytes = 3G\ncustom = c\n");
  EXPECT_EQ(f.name, "n");
  EXPECT_EQ(f.path, "/p");
  EXPECT_EQ(f.optional_path, "");
  EXPECT_EQ(f.count, UINT64_MAX);
  EXPECT_EQ(f.small, 20u);
  EXPECT_EQ(f.bytes, 2 * kMiB);
  EXPECT_EQ(f.small_bytes, 3 * kGiB);
  EXPECT_EQ(f.custom, "c");
}

TEST(KvConfigTest, ErrorsNameFileLineAndKey) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"just words", "t.conf:1: expected key = value"},
      {"\n\n= 3", "t.conf:3: expected key = value"},
      {"name = a\n# c\nname = b", "t.conf:3: name: set twice (first on line 1)"},
      {"count = 1\nname = a\n count=2", "t.conf:3: count: set twice (first on line 1)"},
      {"Name = x", "t.conf:1: Name: unknown key"},
      {"na me = x", "t.conf:1: na me: unknown key"},
      {"path = rel", "t.conf:1: path: \"rel\" is not an absolute path"},
      {"path =", "t.conf:1: path: \"\" is not an absolute path"},
      {"optional_path = rel", "t.conf:1: optional_path: \"rel\" is not an absolute path"},
      {"count = 0", "t.conf:1: count: 0 is out of range (at least 1)"},
      {"count = 18446744073709551616", "t.conf:1: count: \"18446744073709551616\" is not a number"},
      {"count = -1", "t.conf:1: count: \"-1\" is not a number"},
      {"count = +1", "t.conf:1: count: \"+1\" is not a number"},
      {"count = 1K", "t.conf:1: count: \"1K\" is not a number"},
      {"count = 0x10", "t.conf:1: count: \"0x10\" is not a number"},
      {"count =", "t.conf:1: count: \"\" is not a number"},
      {"small = 9", "t.conf:1: small: 9 is out of range (10..20)"},
      {"small = 21", "t.conf:1: small: 21 is out of range (10..20)"},
      {"bytes = 1023", "t.conf:1: bytes: 1023 is out of range (1K..64M bytes)"},
      {"bytes = 65537K", "t.conf:1: bytes: 65537K is out of range (1K..64M bytes)"},
      {"bytes = 1KB", "t.conf:1: bytes: \"1KB\" is not a size (bytes, or a number with K, M or G)"},
      {"small_bytes = 4G", "t.conf:1: small_bytes: 4G is out of range (0..4294967295 bytes)"},
      {"custom = bad", "t.conf:1: custom: custom says no"},
      // The first error stops the reading: the repeated key on line 3 is not reached.
      {"small = 1\nname = a\nname = b", "t.conf:1: small: 1 is out of range (10..20)"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ErrorOf(c.text), c.error) << c.text;
  }
}

TEST(KvConfigTest, Sizes) {
  struct Case {
    const char* text;
    std::optional<uint64_t> bytes;
  };
  const Case cases[] = {
      {"0", 0},
      {"1024", 1024},
      {"1k", kKiB},
      {"3K", 3 * kKiB},
      {"512M", 512 * kMiB},
      {"2g", 2 * kGiB},
      {"17179869183G", 17179869183 * kGiB},
      {"17179869184G", std::nullopt},  // 2^64: overflows
      {"18014398509481984K", std::nullopt},
      {"1T", std::nullopt},
      {"1.5M", std::nullopt},
      {"M", std::nullopt},
      {"", std::nullopt},
      {"1 K", std::nullopt},
      {"K1", std::nullopt},
      {"-1K", std::nullopt},
      {"1KiB", std::nullopt},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ParseKvSize(c.text), c.bytes) << c.text;
  }
  EXPECT_EQ(SizeText(0), "0");
  EXPECT_EQ(SizeText(1000), "1000");
  EXPECT_EQ(SizeText(64 * kKiB), "64K");
  EXPECT_EQ(SizeText(1025 * kKiB), "1025K");
  EXPECT_EQ(SizeText(256 * kMiB), "256M");
  EXPECT_EQ(SizeText(8 * kGiB), "8G");
}

TEST(KvConfigTest, Unquote) {
  EXPECT_EQ(Unquote("\"a b\""), "a b");
  EXPECT_EQ(Unquote("\"\""), "");
  EXPECT_EQ(Unquote("\""), "\"");
  EXPECT_EQ(Unquote("\"a"), "\"a");
  EXPECT_EQ(Unquote("a\""), "a\"");
  EXPECT_EQ(Unquote("plain"), "plain");
}

TEST(ReadConfigTextTest, FilesMissingDirectoriesAndCaps) {
  test::TempDir dir("mp-kv-config-test");
  const std::string path = dir.Write("a.conf", "name = x\n");
  Result<std::string> text = ReadConfigText(path, false);
  ASSERT_TRUE(text) << text.error().ToString();
  EXPECT_EQ(*text, "name = x\n");

  const std::string missing = dir.path() + "/missing.conf";
  Result<std::string> optional = ReadConfigText(missing, true);
  ASSERT_TRUE(optional);
  EXPECT_EQ(*optional, "");
  Result<std::string> required = ReadConfigText(missing, false);
  ASSERT_FALSE(required);
  EXPECT_EQ(required.error().errnum, ENOENT);
  EXPECT_EQ(required.error().what, "open(config \"" + missing + "\")");

  // Optional covers a missing file only, not one that cannot be read.
  Result<std::string> directory = ReadConfigText(dir.path(), true);
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().errnum, EISDIR);

  const std::string big = dir.Write("big.conf", std::string(2049, '#'));
  Result<std::string> capped = ReadConfigText(big, false, 2048);
  ASSERT_FALSE(capped);
  EXPECT_EQ(capped.error().what, "config \"" + big + "\" is larger than 2K bytes");
  EXPECT_TRUE(ReadConfigText(big, false, 4096));
}

// The three config files share the reader: a repeated key is refused by each, naming the
// file, the line and the key (before, monkeyproof.conf let the last one win).
TEST(KvConfigUsersTest, EveryConfigRefusesARepeatedKey) {
  auto supervisor =
      supervisor::ParseConfig("monkeyproof.conf", "max_sessions = 5\n\nmax_sessions = 6\n");
  ASSERT_FALSE(supervisor);
  EXPECT_EQ(supervisor.error().what,
            "monkeyproof.conf:3: max_sessions: set twice (first on line 1)");

  auto api = http::ParseApiConfig("max_connections = 5\nmax_connections = 6\n", "api.conf");
  ASSERT_FALSE(api);
  EXPECT_EQ(api.error().what, "api.conf:2: max_connections: set twice (first on line 1)");

  auto cli = cli::ParseConfigFile("url = http://a\n#\nurl = http://b\n", "cli.conf");
  ASSERT_FALSE(cli);
  EXPECT_EQ(cli.error().what, "cli.conf:3: url: set twice (first on line 1)");
}

TEST(KvConfigUsersTest, SupervisorKeysKeepTheirMeaning) {
  auto c = supervisor::ParseConfig(
      "m.conf",
      "socket_path = /run/x.sock\napi_user = api\nstate_dir = /s\npolicies_dir = /p\n"
      "credentials_dir = /c\ncgroup_root = auto\naudit_log =\nmax_sessions = 3\n"
      "max_ended_sessions = 4\nmax_ended_output_bytes = 8G\nsession_ttl_ms = 5\n"
      "interactive_session_ttl_ms = 6\nkill_grace_ms = 7\n");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->socket_path, "/run/x.sock");
  EXPECT_EQ(c->api_user, "api");
  EXPECT_EQ(c->state_dir, "/s");
  EXPECT_EQ(c->policies_dir, "/p");
  EXPECT_EQ(c->credentials_dir, "/c");
  EXPECT_EQ(c->cgroup_root, "auto");
  EXPECT_EQ(c->audit_log, "");
  EXPECT_EQ(c->max_sessions, 3u);
  EXPECT_EQ(c->max_ended_sessions, 4u);
  EXPECT_EQ(c->max_ended_output_bytes, 8 * kGiB);
  EXPECT_EQ(c->session_ttl_ms, 5u);
  EXPECT_EQ(c->interactive_session_ttl_ms, 6u);
  EXPECT_EQ(c->kill_grace_ms, 7u);

  const std::pair<const char*, const char*> bad[] = {
      {"max_sessions = 0", "m.conf:1: max_sessions: 0 is out of range (at least 1)"},
      {"state_dir = var/x", "m.conf:1: state_dir: \"var/x\" is not an absolute path"},
      {"kill_grace_ms = 3s", "m.conf:1: kill_grace_ms: \"3s\" is not a number"},
      {"bogus = 1", "m.conf:1: bogus: unknown key"},
  };
  for (const auto& [text, error] : bad) {
    auto r = supervisor::ParseConfig("m.conf", text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().what, error);
  }
}

// The host's side of memory: each session's oom_score_adj and the sessions' aggregate cap.
TEST(KvConfigUsersTest, SessionMemorySettings) {
  const supervisor::SupervisorConfig d;
  EXPECT_EQ(d.session_oom_score_adj, 500u);
  EXPECT_EQ(d.sessions_memory_max.Text(), "75%");
  EXPECT_EQ(d.sessions_memory_max.Bytes(4000 * kMiB), 3000 * kMiB);
  for (const auto& [text, shown, bytes] :
       std::vector<std::tuple<std::string, std::string, std::optional<uint64_t>>>{
           {"sessions_memory_max = 60%", "60%", 2400 * kMiB},
           {"sessions_memory_max = 100%", "100%", 4000 * kMiB},
           {"sessions_memory_max = 8G", "8G", 8 * kGiB},
           {"sessions_memory_max = 64M", "64M", 64 * kMiB},
           {"sessions_memory_max = max", "max", std::nullopt},
       }) {
    auto c = supervisor::ParseConfig("m.conf", text + "\nsession_oom_score_adj = 1000\n");
    ASSERT_TRUE(c) << text << ": " << c.error().ToString();
    EXPECT_EQ(c->sessions_memory_max.Text(), shown);
    EXPECT_EQ(c->sessions_memory_max.Bytes(4000 * kMiB), bytes) << text;
    EXPECT_EQ(c->session_oom_score_adj, 1000u);
  }
  const std::pair<const char*, const char*> bad[] = {
      {"session_oom_score_adj = 1001",
       "m.conf:1: session_oom_score_adj: 1001 is out of range (0..1000)"},
      {"sessions_memory_max = 0%",
       "m.conf:1: sessions_memory_max: a share of RAM must be 1% to 100%"},
      {"sessions_memory_max = 101%",
       "m.conf:1: sessions_memory_max: a share of RAM must be 1% to 100%"},
      {"sessions_memory_max = 1M",
       "m.conf:1: sessions_memory_max: expected a share of RAM such as 75%, a size such as 8G (at "
       "least 64M), or max"},
      {"sessions_memory_max = lots",
       "m.conf:1: sessions_memory_max: expected a share of RAM such as 75%, a size such as 8G (at "
       "least 64M), or max"},
  };
  for (const auto& [text, error] : bad) {
    auto r = supervisor::ParseConfig("m.conf", text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().what, error);
  }
}

// The config examples in the docs parse with the readers they are for.
std::string CodeBlockAfter(const std::string& doc, const std::string& marker) {
  std::ifstream f(doc);
  std::stringstream all;
  all << f.rdbuf();
  const std::string text = all.str();
  const size_t at = text.find(marker);
  EXPECT_NE(at, std::string::npos) << marker << " in " << doc;
  if (at == std::string::npos) return "";
  const size_t open = text.find("```\n", at);
  const size_t close = text.find("```", open + 4);
  EXPECT_NE(close, std::string::npos) << doc;
  return text.substr(open + 4, close - open - 4);
}

TEST(KvConfigUsersTest, DocExamplesParse) {
  const std::string cli_example = CodeBlockAfter(MP_DOCS_DIR "/cli.md", "### Config file");
  EXPECT_NE(cli_example.find("url = "), std::string::npos) << cli_example;
  auto cli = cli::ParseConfigFile(cli_example, "docs/cli.md");
  ASSERT_TRUE(cli) << cli.error().what;
  EXPECT_EQ(cli->url, "http://127.0.0.1:3200");

  const std::string api_example =
      CodeBlockAfter(MP_DOCS_DIR "/deploy.md", "**A private interface**");
  auto api = http::ParseApiConfig(api_example, "docs/deploy.md");
  ASSERT_TRUE(api) << api.error().what;
  EXPECT_EQ(api->listen, (std::vector<http::ListenAddress>{{"10.0.0.5", 3200}}));
}

}  // namespace
}  // namespace mp::common
