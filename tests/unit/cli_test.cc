// mp_cli_core: argument parsing, config resolution, request/response helpers and formatting
// of the `monkeyproof` client. Config files live in a mkdtemp directory under /tmp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/config.h"
#include "cli/format.h"
#include "cli/protocol.h"
#include "gtest/gtest.h"

namespace mp::cli {
namespace {

using nlohmann::json;

// ---- helpers

Invocation MustParse(const std::vector<std::string>& args) {
  ParseResult result = ParseArgs(args);
  if (const auto* err = std::get_if<UsageError>(&result)) {
    ADD_FAILURE() << "unexpected usage error: " << err->message;
    return {};
  }
  return std::get<Invocation>(std::move(result));
}

UsageError MustFail(const std::vector<std::string>& args) {
  ParseResult result = ParseArgs(args);
  if (const auto* err = std::get_if<UsageError>(&result)) return *err;
  ADD_FAILURE() << "expected a usage error";
  return {};
}

template <typename T>
T MustParseAs(const std::vector<std::string>& args) {
  Invocation inv = MustParse(args);
  const T* cmd = std::get_if<T>(&inv.command);
  if (cmd == nullptr) {
    ADD_FAILURE() << "parsed to another command (index " << inv.command.index() << ")";
    return T{};
  }
  return *cmd;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mp-cli-test-XXXXXX";
    const char* dir = ::mkdtemp(tmpl);
    EXPECT_NE(dir, nullptr);
    path_ = dir != nullptr ? dir : "/tmp";
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `name` with `mode` and returns its path.
  std::string Write(const std::string& name, const std::string& contents, mode_t mode = 0600) {
    const std::string file = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(file).parent_path());
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out << contents;
    }
    EXPECT_EQ(::chmod(file.c_str(), mode), 0);
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
}

// ---- argument parsing

TEST(CliArgs, NoArgumentsIsTheOverview) {
  const HelpCommand help = MustParseAs<HelpCommand>({});
  EXPECT_EQ(help.topic, "");
}

TEST(CliArgs, HelpForms) {
  EXPECT_EQ(MustParseAs<HelpCommand>({"--help"}).topic, "");
  EXPECT_EQ(MustParseAs<HelpCommand>({"-h"}).topic, "");
  EXPECT_EQ(MustParseAs<HelpCommand>({"run", "--help"}).topic, "run");
  EXPECT_EQ(MustParseAs<HelpCommand>({"logs", "-h", "x"}).topic, "logs");
  EXPECT_EQ(MustParseAs<HelpCommand>({"help", "attach"}).topic, "attach");
  EXPECT_EQ(MustParseAs<HelpCommand>({"help"}).topic, "");
  EXPECT_NE(MustFail({"help", "bogus"}).message.find("unknown command 'bogus'"), std::string::npos);
  EXPECT_EQ(MustFail({"help", "run", "ls"}).command, "help");
}

TEST(CliArgs, UnknownCommandAndOptions) {
  EXPECT_EQ(MustFail({"frobnicate"}).message, "unknown command 'frobnicate'");
  const UsageError opt = MustFail({"ls", "--bogus"});
  EXPECT_EQ(opt.message, "unknown option '--bogus'");
  EXPECT_EQ(opt.command, "ls");
  EXPECT_EQ(MustFail({"ls", "-x"}).message, "unknown option '-x'");
  EXPECT_EQ(MustFail({"logs", "-fv", "id"}).message, "unknown option '-fv'");
  // Command options are not global options.
  EXPECT_EQ(MustFail({"--follow", "logs", "id"}).message, "unknown option '--follow'");
  EXPECT_EQ(MustFail({"--json"}).message, "no command given");
  EXPECT_EQ(MustFail({"--", "ls"}).message, "'--' must follow a command");
}

TEST(CliArgs, OptionValues) {
  EXPECT_EQ(MustFail({"ls", "--url"}).message, "option --url needs a value");
  EXPECT_EQ(MustFail({"ls", "--owner="}).message, "option --owner needs a non-empty value");
  EXPECT_EQ(MustFail({"ls", "--json=yes"}).message, "option --json takes no value");
  EXPECT_EQ(MustFail({"logs", "--since"}).message, "option --since needs a value");
}

TEST(CliArgs, GlobalOptionsBeforeAndAfterTheCommand) {
  const Invocation before =
      MustParse({"--url", "http://a:1", "--token=t0k", "--json", "--config", "/c", "ls"});
  EXPECT_EQ(before.global.url, "http://a:1");
  EXPECT_EQ(before.global.token, "t0k");
  EXPECT_EQ(before.global.config, "/c");
  EXPECT_TRUE(before.global.json);
  EXPECT_TRUE(std::holds_alternative<LsCommand>(before.command));

  const Invocation after = MustParse({"ls", "--json", "--token-file", "/tf", "--url=http://b"});
  EXPECT_EQ(after.global.url, "http://b");
  EXPECT_EQ(after.global.token_file, "/tf");
  EXPECT_TRUE(after.global.json);

  EXPECT_EQ(MustFail({"--token", "a", "--token-file", "/b", "ls"}).message,
            "give --token or --token-file, not both");
}

TEST(CliArgs, RunWithEveryOption) {
  const Invocation inv =
      MustParse({"run",     "--type", "print",       "--preset", "claude",    "--cwd", "/srv/w",
                 "--owner", "me",     "--label",     "a",        "--label=b", "--env", "K=V",
                 "--env",   "E=",     "--max-turns", "7",        "--memory",  "512M",  "--wall",
                 "60",      "--json", "--",          "fix",      "the",       "bug"});
  const RunCommand& run = std::get<RunCommand>(inv.command);
  EXPECT_EQ(run.type, "print");
  EXPECT_EQ(run.preset, "claude");
  EXPECT_EQ(run.cwd, "/srv/w");
  EXPECT_EQ(run.owner, "me");
  EXPECT_EQ(run.labels, (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(run.env.size(), 2u);
  EXPECT_EQ(run.env[0], (std::pair<std::string, std::string>{"K", "V"}));
  EXPECT_EQ(run.env[1], (std::pair<std::string, std::string>{"E", ""}));
  EXPECT_EQ(run.max_turns, 7u);
  EXPECT_EQ(run.memory_bytes, uint64_t{512} << 20);
  EXPECT_EQ(run.wall_seconds, 60u);
  EXPECT_FALSE(run.detach);
  EXPECT_FALSE(run.forward_stdin);
  EXPECT_EQ(run.task, "fix the bug");
  EXPECT_TRUE(inv.global.json);
}

TEST(CliArgs, RunOptionsEndAtTheFirstTaskWord) {
  const Invocation inv = MustParse({"--json", "run", "--detach", "ls", "-la", "--json", "--"});
  const RunCommand& run = std::get<RunCommand>(inv.command);
  EXPECT_TRUE(run.detach);
  EXPECT_EQ(run.task, "ls -la --json --");
  EXPECT_TRUE(inv.global.json);
  EXPECT_EQ(MustParseAs<RunCommand>({"run", "--", "--weird", "x"}).task, "--weird x");
  EXPECT_EQ(MustParseAs<RunCommand>({"run", "echo", "--help"}).task, "echo --help");
  EXPECT_TRUE(MustParseAs<RunCommand>({"run", "--stdin", "sort"}).forward_stdin);
  EXPECT_EQ(MustParseAs<RunCommand>({"run", "--type", "exec", "-"}).task, "-");
}

TEST(CliArgs, RunErrors) {
  EXPECT_EQ(MustFail({"run"}).message, "run needs a TASK");
  EXPECT_EQ(MustFail({"run", "--detach"}).command, "run");
  EXPECT_EQ(MustFail({"run", "--", ""}).message, "run needs a TASK");
  EXPECT_NE(MustFail({"run", "--type", "shell", "x"}).message.find("--type must be"),
            std::string::npos);
  EXPECT_NE(MustFail({"run", "--preset", "claude", "x"}).message.find("--preset needs"),
            std::string::npos);
  EXPECT_NE(MustFail({"run", "--type", "exec", "--preset", "p", "x"}).message.find("--preset"),
            std::string::npos);
  EXPECT_NE(MustFail({"run", "--detach", "--stdin", "x"}).message.find("--stdin"),
            std::string::npos);
  EXPECT_NE(MustFail({"run", "--env", "NOVALUE", "x"}).message.find("--env wants"),
            std::string::npos);
  EXPECT_NE(MustFail({"run", "--env", "=v", "x"}).message.find("--env wants"), std::string::npos);
  for (const char* bad : {"0", "10001", "-1", "x"}) {
    EXPECT_NE(MustFail({"run", "--max-turns", bad, "x"}).message.find("--max-turns"),
              std::string::npos)
        << bad;
  }
  for (const char* bad : {"0", "12Q", "M", "-5", "99999999999999999999T"}) {
    EXPECT_NE(MustFail({"run", "--memory", bad, "x"}).message.find("--memory"), std::string::npos)
        << bad;
  }
  EXPECT_NE(MustFail({"run", "--wall", "0", "x"}).message.find("--wall"), std::string::npos);
  EXPECT_NE(MustFail({"run", "--wall", "1.5", "x"}).message.find("--wall"), std::string::npos);
}

TEST(CliArgs, Ls) {
  const LsCommand ls = MustParseAs<LsCommand>(
      {"ls", "--owner", "ci", "--label", "nightly", "--status", "running", "--limit", "5"});
  EXPECT_EQ(ls.owner, "ci");
  EXPECT_EQ(ls.label, "nightly");
  EXPECT_EQ(ls.status, "running");
  EXPECT_EQ(ls.limit, 5u);
  for (const char* status : {"exited", "killed", "starting", "failed"}) {
    EXPECT_EQ(MustParseAs<LsCommand>({"ls", "--status", status}).status, status);
  }
  EXPECT_NE(MustFail({"ls", "--status", "done"}).message.find("--status must be"),
            std::string::npos);
  EXPECT_NE(MustFail({"ls", "--limit", "0"}).message.find("--limit"), std::string::npos);
  EXPECT_NE(MustFail({"ls", "--limit", "1001"}).message.find("--limit"), std::string::npos);
  EXPECT_EQ(MustFail({"ls", "extra"}).message, "ls takes no arguments (got 'extra')");
}

TEST(CliArgs, ShowAttachKill) {
  EXPECT_EQ(MustParseAs<ShowCommand>({"show", "s-1"}).id, "s-1");
  EXPECT_EQ(MustParseAs<AttachCommand>({"attach", "s-2", "--url", "http://x"}).id, "s-2");
  EXPECT_EQ(MustFail({"show"}).message, "show needs a session ID");
  EXPECT_EQ(MustFail({"attach", "a", "b"}).message, "attach takes one session ID, got 2 arguments");
  EXPECT_EQ(MustFail({"show", ""}).message, "the session ID is empty");
  EXPECT_EQ(MustParseAs<KillCommand>({"kill", "a", "b"}).ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(MustFail({"kill"}).message, "kill needs at least one session ID");
}

TEST(CliArgs, Logs) {
  const LogsCommand plain = MustParseAs<LogsCommand>({"logs", "s-1"});
  EXPECT_EQ(plain.id, "s-1");
  EXPECT_FALSE(plain.follow);
  EXPECT_EQ(plain.since, 0u);
  const LogsCommand follow = MustParseAs<LogsCommand>({"logs", "-f", "s-1", "--since", "4096"});
  EXPECT_TRUE(follow.follow);
  EXPECT_EQ(follow.since, 4096u);
  EXPECT_TRUE(MustParseAs<LogsCommand>({"logs", "s-1", "--follow"}).follow);
  EXPECT_NE(MustFail({"logs", "s-1", "--since", "-3"}).message.find("--since"), std::string::npos);
  EXPECT_EQ(MustFail({"logs"}).message, "logs needs a session ID");
}

TEST(CliArgs, Send) {
  const SendCommand words = MustParseAs<SendCommand>({"send", "s-1", "hello", "world"});
  EXPECT_EQ(words.id, "s-1");
  EXPECT_EQ(words.text, "hello world");
  EXPECT_TRUE(words.newline);
  EXPECT_FALSE(words.from_stdin);

  const SendCommand no_newline = MustParseAs<SendCommand>({"send", "-n", "s-1", "-"});
  EXPECT_FALSE(no_newline.newline);
  EXPECT_TRUE(no_newline.from_stdin);
  EXPECT_TRUE(MustParseAs<SendCommand>({"send", "s-1", "--no-newline", "x"}).newline == false);

  // After the first TEXT word everything is text.
  const SendCommand literal = MustParseAs<SendCommand>({"send", "s-1", "yes", "-n", "--json"});
  EXPECT_EQ(literal.text, "yes -n --json");
  EXPECT_TRUE(literal.newline);
  EXPECT_EQ(MustParseAs<SendCommand>({"send", "s-1", "-", "x"}).text, "- x");

  EXPECT_NE(MustFail({"send", "s-1"}).message.find("send needs"), std::string::npos);
  EXPECT_NE(MustFail({"send"}).message.find("send needs"), std::string::npos);
}

TEST(CliArgs, PoliciesAndVersion) {
  (void)MustParseAs<PoliciesCommand>({"policies", "--json"});
  EXPECT_EQ(MustFail({"policies", "x"}).command, "policies");
  EXPECT_FALSE(MustParseAs<VersionCommand>({"version"}).client_only);
  EXPECT_TRUE(MustParseAs<VersionCommand>({"version", "--client"}).client_only);
  EXPECT_TRUE(MustParseAs<VersionCommand>({"--version"}).client_only);
}

TEST(CliArgs, HelpTexts) {
  const std::string_view overview = HelpText("");
  for (const std::string_view name : CommandNames()) {
    EXPECT_NE(overview.find("  " + std::string(name) + " "), std::string_view::npos) << name;
    const std::string_view help = HelpText(name);
    EXPECT_NE(help, overview) << name;
    EXPECT_EQ(help.rfind("Usage: monkeyproof " + std::string(name), 0), 0u) << name;
  }
  EXPECT_NE(overview.find("https://"), std::string_view::npos);
  EXPECT_NE(overview.find("MONKEYPROOF_TOKEN_FILE"), std::string_view::npos);
  for (const char* tls : {"--ca-file", "--client-cert", "--client-key", "MONKEYPROOF_CA_FILE",
                          "MONKEYPROOF_CLIENT_CERT", "MONKEYPROOF_CLIENT_KEY"}) {
    EXPECT_NE(overview.find(tls), std::string_view::npos) << tls;
  }
  EXPECT_EQ(HelpText("bogus"), overview);
}

TEST(CliArgs, Numbers) {
  EXPECT_EQ(ParseDecimal("0"), 0u);
  EXPECT_EQ(ParseDecimal("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(ParseDecimal("18446744073709551616"), std::nullopt);
  EXPECT_EQ(ParseDecimal(""), std::nullopt);
  EXPECT_EQ(ParseDecimal("+1"), std::nullopt);
  EXPECT_EQ(ParseDecimal("1 "), std::nullopt);

  EXPECT_EQ(ParseByteSize("4096"), 4096u);
  EXPECT_EQ(ParseByteSize("4096b"), 4096u);
  EXPECT_EQ(ParseByteSize("2k"), 2048u);
  EXPECT_EQ(ParseByteSize("2KiB"), 2048u);
  EXPECT_EQ(ParseByteSize("3MB"), uint64_t{3} << 20);
  EXPECT_EQ(ParseByteSize("1G"), uint64_t{1} << 30);
  EXPECT_EQ(ParseByteSize("1t"), uint64_t{1} << 40);
  EXPECT_EQ(ParseByteSize("16777216T"), std::nullopt);  // 2^64
  EXPECT_EQ(ParseByteSize("0"), std::nullopt);
  EXPECT_EQ(ParseByteSize("1.5G"), std::nullopt);
  EXPECT_EQ(ParseByteSize("1 G"), std::nullopt);
}

// ---- server URL

TEST(CliUrl, HostPortAndPrefix) {
  const Result<ServerUrl> def = ParseServerUrl(kDefaultUrl);
  ASSERT_TRUE(def) << def.error().ToString();
  EXPECT_EQ(def->host, "127.0.0.1");
  EXPECT_EQ(def->port, 3200);
  EXPECT_EQ(def->prefix, "");
  EXPECT_EQ(def->ToString(), "http://127.0.0.1:3200");
  EXPECT_EQ(def->Target("/sessions?x=1"), "/sessions?x=1");

  const Result<ServerUrl> named = ParseServerUrl("HTTP://mp.example.org/api/v1//");
  ASSERT_TRUE(named) << named.error().ToString();
  EXPECT_EQ(named->host, "mp.example.org");
  EXPECT_EQ(named->port, 80);
  EXPECT_EQ(named->prefix, "/api/v1");
  EXPECT_EQ(named->Target("/sessions"), "/api/v1/sessions");
  EXPECT_EQ(named->HostHeader(), "mp.example.org:80");
  EXPECT_EQ(named->ToString(), "http://mp.example.org:80/api/v1");

  const Result<ServerUrl> v6 = ParseServerUrl("http://[::1]:8080/");
  ASSERT_TRUE(v6) << v6.error().ToString();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 8080);
  EXPECT_EQ(v6->prefix, "");
  EXPECT_EQ(v6->HostHeader(), "[::1]:8080");
}

// https:// (issue 15, built-in TLS): port 443 by default, the scheme kept for messages.
TEST(CliUrl, Https) {
  const Result<ServerUrl> https = ParseServerUrl("HTTPS://mp.example.org/gw/");
  ASSERT_TRUE(https) << https.error().ToString();
  EXPECT_TRUE(https->https);
  EXPECT_EQ(https->port, 443);
  EXPECT_EQ(https->prefix, "/gw");
  EXPECT_EQ(https->ToString(), "https://mp.example.org:443/gw");
  const Result<ServerUrl> with_port = ParseServerUrl("https://[::1]:3443");
  ASSERT_TRUE(with_port);
  EXPECT_EQ(with_port->port, 3443);
  EXPECT_EQ(with_port->ToString(), "https://[::1]:3443");
  const Result<ServerUrl> plain = ParseServerUrl("http://h");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->https);
  EXPECT_EQ(plain->port, 80);
}

// The API's Unix socket (listen_unix): unix:/PATH, absolute and fitting sun_path.
TEST(CliUrl, UnixSocket) {
  const Result<ServerUrl> u = ParseServerUrl("unix:/run/monkeyproof-api/api.sock");
  ASSERT_TRUE(u) << u.error().what;
  EXPECT_EQ(u->unix_path, "/run/monkeyproof-api/api.sock");
  EXPECT_FALSE(u->https);
  EXPECT_EQ(u->prefix, "");
  EXPECT_EQ(u->ToString(), "unix:/run/monkeyproof-api/api.sock");
  EXPECT_EQ(u->HostHeader(), "localhost");
  EXPECT_EQ(u->Target("/sessions"), "/sessions");
  EXPECT_TRUE(ParseServerUrl("unix:/" + std::string(106, 'a')));
  for (const std::string& bad : {std::string("unix:api.sock"), std::string("unix:"),
                                 "unix:/" + std::string(107, 'a'), std::string("unix:/a\nb")}) {
    const Result<ServerUrl> parsed = ParseServerUrl(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_NE(parsed.error().what.find("unix:"), std::string::npos) << parsed.error().what;
  }
  // Control: an http:// URL has no socket path.
  EXPECT_EQ(ParseServerUrl("http://127.0.0.1:3200")->unix_path, "");
}

TEST(CliUrl, Refusals) {
  const Result<ServerUrl> wss = ParseServerUrl("wss://x");
  ASSERT_FALSE(wss);
  EXPECT_NE(wss.error().what.find("use http:// or https://"), std::string::npos);

  const std::pair<const char*, const char*> cases[] = {
      {"ftp://x", "unsupported scheme"},
      {"127.0.0.1:3200", "not a URL"},
      {"http://", "no host"},
      {"http://:3200", "no host"},
      {"http://u:p@host", "user:password@"},
      {"http://host/?a=1", "no query"},
      {"http://host#frag", "no query or fragment"},
      {"http://host:0", "port"},
      {"http://host:65536", "port"},
      {"http://host:http", "port"},
      {"http://host:", "port"},
      {"http://::1:80", "brackets"},
      {"http://[::1", "missing ']'"},
      {"http://[zz]:80", "IPv6"},
      {"http://ho st", "spaces"},
      {"http://h$st", "bad character"},
  };
  for (const auto& [url, expected] : cases) {
    const Result<ServerUrl> parsed = ParseServerUrl(url);
    ASSERT_FALSE(parsed) << url;
    EXPECT_NE(parsed.error().what.find(expected), std::string::npos)
        << url << ": " << parsed.error().what;
  }
}

// ---- config file and precedence

TEST(CliConfig, ParsesKeysCommentsAndQuotes) {
  const Result<ConfigFile> config = ParseConfigFile(
      "# monkeyproof client\n\n  url = http://h:1  \ntoken=\"abc def\"\r\n"
      "token_file = ~/tok\n",
      "cli.conf");
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->url, "http://h:1");
  EXPECT_EQ(config->token, "abc def");
  EXPECT_EQ(config->token_file, "~/tok");

  const Result<ConfigFile> empty = ParseConfigFile("", "cli.conf");
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->url);
}

TEST(CliConfig, ErrorsNameTheLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"url = http://a\nbogus = 1\n", "cli.conf:2: bogus: unknown key"},
      {"\n\njust words\n", "cli.conf:3: expected key = value"},
      {"token = a\ntoken = b\n", "cli.conf:2: token: set twice (first on line 1)"},
      {"url =\n", "cli.conf:1: url: empty value"},
      {"token_file = \"\"\n", "cli.conf:1: token_file: empty value"},
  };
  for (const auto& [text, expected] : cases) {
    const Result<ConfigFile> config = ParseConfigFile(text, "cli.conf");
    ASSERT_FALSE(config) << text;
    EXPECT_EQ(config.error().what.rfind(expected, 0), 0u) << config.error().what;
  }
}

TEST(CliConfig, DefaultPath) {
  EXPECT_EQ(DefaultConfigPath(FakeEnv({{"XDG_CONFIG_HOME", "/x"}, {"HOME", "/h"}})),
            "/x/monkeyproof/cli.conf");
  EXPECT_EQ(DefaultConfigPath(FakeEnv({{"XDG_CONFIG_HOME", "relative"}, {"HOME", "/h"}})),
            "/h/.config/monkeyproof/cli.conf");
  EXPECT_EQ(DefaultConfigPath(FakeEnv({{"HOME", "/h"}})), "/h/.config/monkeyproof/cli.conf");
  EXPECT_EQ(DefaultConfigPath(FakeEnv({})), std::nullopt);
}

TEST(CliConfig, DefaultsWhenNothingIsGiven) {
  TempDir dir;  // HOME without a config file: that is fine
  const Result<ResolvedConfig> config = ResolveConfig({}, FakeEnv({{"HOME", dir.path()}}));
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->url.ToString(), "http://127.0.0.1:3200");
  EXPECT_EQ(config->url_source, "default");
  EXPECT_EQ(config->token, "");
  EXPECT_EQ(config->token_source, "");
  EXPECT_TRUE(config->warnings.empty());
}

TEST(CliConfig, PrecedenceFlagEnvConfigDefault) {
  TempDir dir;
  dir.Write(".config/monkeyproof/cli.conf", "url = http://conf:1\ntoken = conf-token\n");
  GlobalOptions none;
  GlobalOptions flags;
  flags.url = "http://flag:3";
  flags.token = "flag-token";
  const std::map<std::string, std::string> home = {{"HOME", dir.path()}};
  std::map<std::string, std::string> with_env = home;
  with_env[kEnvUrl] = "http://env:2";
  with_env[kEnvToken] = "env-token";

  Result<ResolvedConfig> r = ResolveConfig(flags, FakeEnv(with_env));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->url.host, "flag");
  EXPECT_EQ(r->url_source, "--url");
  EXPECT_EQ(r->token, "flag-token");
  EXPECT_EQ(r->token_source, "--token");

  r = ResolveConfig(none, FakeEnv(with_env));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->url.host, "env");
  EXPECT_EQ(r->url_source, "MONKEYPROOF_URL");
  EXPECT_EQ(r->token, "env-token");
  EXPECT_EQ(r->token_source, "MONKEYPROOF_TOKEN");

  r = ResolveConfig(none, FakeEnv(home));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->url.host, "conf");
  EXPECT_EQ(r->url_source, "config file " + dir.path() + "/.config/monkeyproof/cli.conf");
  EXPECT_EQ(r->token, "conf-token");

  // XDG_CONFIG_HOME moves the default file away: back to the defaults.
  std::map<std::string, std::string> xdg = home;
  xdg["XDG_CONFIG_HOME"] = dir.path() + "/elsewhere";
  r = ResolveConfig(none, FakeEnv(xdg));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->url_source, "default");
  EXPECT_EQ(r->token, "");
}

TEST(CliConfig, TokenFiles) {
  TempDir dir;
  const std::string flag_file = dir.Write("flag.tok", "  flag-file-token\n");
  const std::string env_file = dir.Write("env.tok", "env-file-token\n");
  dir.Write("conf/cli.conf", "token_file = rel.tok\n");
  dir.Write("conf/rel.tok", "conf-file-token");
  const std::string config_path = dir.path() + "/conf/cli.conf";

  GlobalOptions flags;
  flags.config = config_path;
  flags.token_file = flag_file;
  Result<ResolvedConfig> r =
      ResolveConfig(flags, FakeEnv({{kEnvTokenFile, env_file}, {kEnvToken, "env-token"}}));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->token, "flag-file-token");
  EXPECT_EQ(r->token_source, "--token-file " + flag_file);

  flags.token_file.reset();
  // At one level a token beats a token file.
  r = ResolveConfig(flags, FakeEnv({{kEnvTokenFile, env_file}, {kEnvToken, "env-token"}}));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->token, "env-token");

  r = ResolveConfig(flags, FakeEnv({{kEnvTokenFile, env_file}}));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->token, "env-file-token");
  EXPECT_EQ(r->token_source, "MONKEYPROOF_TOKEN_FILE (" + env_file + ")");

  // A relative token_file in the config file is relative to the config file.
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->token, "conf-file-token");
  EXPECT_NE(r->token_source.find(dir.path() + "/conf/rel.tok"), std::string::npos);

  // ~/ in the config file is $HOME.
  dir.Write("conf/cli.conf", "token_file = ~/home.tok\n");
  dir.Write("home.tok", "home-token\n");
  r = ResolveConfig(flags, FakeEnv({{"HOME", dir.path()}}));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->token, "home-token");
}

TEST(CliConfig, TokenFileProblems) {
  TempDir dir;
  GlobalOptions flags;
  flags.config = dir.Write("cli.conf", "");
  flags.token_file = dir.path() + "/missing.tok";
  Result<ResolvedConfig> r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, ENOENT);

  flags.token_file = dir.Write("empty.tok", " \n");
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("is empty"), std::string::npos);

  flags.token_file = dir.Write("spaces.tok", "two words\n");
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("contains spaces"), std::string::npos);

  flags.token_file = dir.Write("open.tok", "tok\n", 0644);
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("readable by every user"), std::string::npos);
}

TEST(CliConfig, WorldReadableConfigWithATokenWarns) {
  TempDir dir;
  GlobalOptions flags;
  flags.config = dir.Write("cli.conf", "token = secret\n", 0644);
  Result<ResolvedConfig> r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("holds a token and is readable by every user"), std::string::npos);
  EXPECT_NE(r->warnings[0].find("chmod 600"), std::string::npos);

  flags.config = dir.Write("private.conf", "token = secret\n", 0600);
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->warnings.empty());

  flags.config = dir.Write("nosecret.conf", "url = http://a:1\n", 0644);
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->warnings.empty());
}

TEST(CliConfig, ConfigFileProblems) {
  TempDir dir;
  GlobalOptions flags;
  flags.config = dir.path() + "/nope.conf";  // named explicitly: must exist
  Result<ResolvedConfig> r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, ENOENT);

  flags.config = dir.Write("bad.conf", "colour = blue\n");
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("bad.conf:1: colour: unknown key"), std::string::npos);

  flags.config = dir.path();  // a directory
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("not a regular file"), std::string::npos);

  // A bad URL names where it came from.
  flags.config = dir.Write("ws.conf", "url = ws://x\n");
  r = ResolveConfig(flags, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what.rfind("config file " + dir.path() + "/ws.conf: ", 0), 0u);
  EXPECT_NE(r.error().what.find("unsupported scheme"), std::string::npos);

  GlobalOptions url_flag;
  url_flag.url = "ws://x";
  r = ResolveConfig(url_flag, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what.rfind("--url: ", 0), 0u);
}

// The TLS files: flag > environment > config file (relative to its directory); a certificate
// needs its key; with an http:// URL they are unused, and a warning says so.
TEST(CliConfig, TlsFiles) {
  TempDir dir;
  GlobalOptions flags;
  flags.config = dir.Write("cli.conf",
                           "url = https://h:3443\nca_file = ca.pem\nclient_cert = /c/cert.pem\n"
                           "client_key = ~/key.pem\n");
  Result<ResolvedConfig> r = ResolveConfig(flags, FakeEnv({{"HOME", "/home/u"}}));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_TRUE(r->url.https);
  EXPECT_EQ(r->tls.ca_file, dir.path() + "/ca.pem");
  EXPECT_EQ(r->tls.cert_file, "/c/cert.pem");
  EXPECT_EQ(r->tls.key_file, "/home/u/key.pem");
  EXPECT_TRUE(r->warnings.empty());

  r = ResolveConfig(flags, FakeEnv({{"MONKEYPROOF_CA_FILE", "/env/ca.pem"}}));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->tls.ca_file, "/env/ca.pem");
  flags.ca_file = "/flag/ca.pem";
  r = ResolveConfig(flags, FakeEnv({{"MONKEYPROOF_CA_FILE", "/env/ca.pem"}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->tls.ca_file, "/flag/ca.pem");

  GlobalOptions half;
  half.config = dir.Write("half.conf", "url = https://h\n");
  half.client_cert = "/c/cert.pem";
  r = ResolveConfig(half, FakeEnv({}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("without its key (--client-key)"), std::string::npos);

  GlobalOptions plain;
  plain.config = dir.Write("plain.conf", "url = http://h\nca_file = /ca.pem\n");
  r = ResolveConfig(plain, FakeEnv({}));
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("https:// URLs only"), std::string::npos);

  // The global flags parse before or after the command.
  const Invocation inv =
      MustParse({"--ca-file", "/a.pem", "ls", "--client-cert=/c.pem", "--client-key", "/k.pem"});
  EXPECT_EQ(inv.global.ca_file, "/a.pem");
  EXPECT_EQ(inv.global.client_cert, "/c.pem");
  EXPECT_EQ(inv.global.client_key, "/k.pem");
}

// ---- requests and responses

TEST(CliProtocol, PathsAndQueries) {
  EXPECT_EQ(UrlEncode("a b/c?d&e=é~._-"), "a%20b%2Fc%3Fd%26e%3D%C3%A9~._-");
  EXPECT_EQ(SessionPath("s-01J"), "/sessions/s-01J");
  EXPECT_EQ(SessionPath("../x", "/ws"), "/sessions/..%2Fx/ws");
  EXPECT_EQ(ListPath({}), "/sessions");
  LsCommand ls;
  ls.owner = "me & you";
  ls.label = "a";
  ls.status = "running";
  ls.limit = 20;
  EXPECT_EQ(ListPath(ls), "/sessions?owner=me%20%26%20you&label=a&status=running&limit=20");
}

TEST(CliProtocol, SpawnBody) {
  RunCommand run;
  run.task = "echo hi";
  EXPECT_EQ(json::parse(SpawnBody(run, std::nullopt)), json({{"task", "echo hi"}}));

  run.type = "interactive";
  run.preset = "claude-interactive";
  run.cwd = "/srv/w";
  run.owner = "me";
  run.labels = {"a", "b"};
  run.env = {{"A", "1"}, {"B", ""}};
  run.max_turns = 3;
  run.memory_bytes = 1024;
  run.wall_seconds = 9;
  const json body = json::parse(SpawnBody(run, std::make_pair(24, 80)));
  EXPECT_EQ(body["type"], "interactive");
  EXPECT_EQ(body["preset"], "claude-interactive");
  EXPECT_EQ(body["cwd"], "/srv/w");
  EXPECT_EQ(body["owner"], "me");
  EXPECT_EQ(body["labels"], json({"a", "b"}));
  EXPECT_EQ(body["env"], json({{"A", "1"}, {"B", ""}}));
  EXPECT_EQ(body["maxTurns"], 3);
  EXPECT_EQ(body["limits"], json({{"memoryMaxBytes", 1024}, {"wallSeconds", 9}}));
  EXPECT_EQ(body["pty"], json({{"rows", 24}, {"cols", 80}}));

  run.type = "exec";  // no pty for other types
  EXPECT_FALSE(json::parse(SpawnBody(run, std::make_pair(24, 80))).contains("pty"));

  run.task = "bad \xff byte";  // not UTF-8: replaced rather than refused
  EXPECT_EQ(json::parse(SpawnBody(run, std::nullopt))["task"], "bad \xEF\xBF\xBD byte");
}

TEST(CliProtocol, InputAndClientMessages) {
  const Result<std::string> body = InputBody("yes\n");
  ASSERT_TRUE(body);
  EXPECT_EQ(*body, R"({"input":"yes\n"})");
  const Result<std::string> binary = InputBody("\xff\xfe");
  ASSERT_FALSE(binary);
  EXPECT_NE(binary.error().what.find("not valid UTF-8"), std::string::npos);
  EXPECT_EQ(json::parse(WsResizeJson(40, 120)),
            json({{"type", "resize"}, {"rows", 40}, {"cols", 120}}));
  EXPECT_EQ(json::parse(WsCloseStdinJson()), json({{"type", "close-stdin"}}));
}

TEST(CliProtocol, JsonMembers) {
  EXPECT_EQ(JsonStringMember(R"({"id":"s-1","n":3})", "id"), "s-1");
  EXPECT_EQ(JsonStringMember(R"({"id":3})", "id"), std::nullopt);
  EXPECT_EQ(JsonStringMember("[1]", "id"), std::nullopt);
  EXPECT_EQ(JsonStringMember("not json", "id"), std::nullopt);
  EXPECT_EQ(JsonIntegerMember(R"({"outputBytes":12345})", "outputBytes"), 12345);
  EXPECT_EQ(JsonIntegerMember(R"({"outputBytes":null})", "outputBytes"), std::nullopt);
}

TEST(CliProtocol, OutputHeaders) {
  HttpResponse response;
  response.status = 200;
  response.headers = {{"X-Output-Offset", "10"},
                      {"x-output-next-offset", "20"},
                      {"x-output-total-size", "30"},
                      {"x-output-ended", "true"},
                      {"x-output-gaps", "0-5,7-9"}};
  Result<OutputChunk> chunk = ParseOutputHeaders(response);
  ASSERT_TRUE(chunk) << chunk.error().ToString();
  EXPECT_EQ(chunk->offset, 10u);
  EXPECT_EQ(chunk->next, 20u);
  EXPECT_EQ(chunk->total, 30u);
  EXPECT_TRUE(chunk->ended);
  EXPECT_EQ(chunk->gaps, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 5}, {7, 9}}));

  response.headers.pop_back();
  response.headers[3].second = "false";
  chunk = ParseOutputHeaders(response);
  ASSERT_TRUE(chunk);
  EXPECT_FALSE(chunk->ended);
  EXPECT_TRUE(chunk->gaps.empty());

  response.headers.erase(response.headers.begin() + 1);
  chunk = ParseOutputHeaders(response);
  ASSERT_FALSE(chunk);
  EXPECT_NE(chunk.error().what.find("x-output-next-offset"), std::string::npos);

  EXPECT_FALSE(ParseGaps("5-1"));
  EXPECT_FALSE(ParseGaps("1-2,"));
  EXPECT_FALSE(ParseGaps("x"));
  EXPECT_TRUE(ParseGaps("")->empty());
}

TEST(CliProtocol, ServerMessages) {
  using Kind = ServerMessage::Kind;
  Result<ServerMessage> m = ParseServerMessage(
      R"({"type":"catchup","id":"s-1","task":"t","status":"running","exitCode":null,"data":"","offset":5,"next":5})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kCatchup);
  EXPECT_TRUE(m->has_offsets);
  EXPECT_EQ(m->next, 5u);

  m = ParseServerMessage(R"({"type":"stderr","data":"oops\n","offset":5,"next":10})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kStderr);
  EXPECT_EQ(m->data, "oops\n");

  m = ParseServerMessage(R"({"type":"stdout","data":"legacy"})");  // the original's shape
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->has_offsets);

  m = ParseServerMessage(
      R"({"type":"exit","code":137,"duration":1.5,"reason":"oom","signal":9,"offset":10})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kExit);
  EXPECT_EQ(m->code, 137);
  EXPECT_EQ(m->signal, 9);
  EXPECT_EQ(m->reason, "oom");

  m = ParseServerMessage(R"({"type":"exit","code":0,"signal":null})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->signal, std::nullopt);

  m = ParseServerMessage(R"({"type":"gap","from":3,"to":9})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kGap);
  EXPECT_EQ(m->from, 3u);
  EXPECT_EQ(m->to, 9u);

  m = ParseServerMessage(R"({"type":"lagged","resumeFrom":77})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kLagged);
  EXPECT_EQ(m->resume_from, 77u);

  m = ParseServerMessage(R"({"type":"error","error":"not running","code":"wrong_state"})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kError);
  EXPECT_EQ(m->error_code, "wrong_state");
  EXPECT_EQ(m->code, -1);

  m = ParseServerMessage(R"({"type":"killed"})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kKilled);
  m = ParseServerMessage(R"({"type":"future-thing"})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Kind::kOther);
  EXPECT_FALSE(ParseServerMessage("[]"));
  EXPECT_FALSE(ParseServerMessage("{"));
}

ServerMessage Output(std::string data, uint64_t offset, uint64_t next) {
  ServerMessage msg;
  msg.kind = ServerMessage::Kind::kStdout;
  msg.data = std::move(data);
  msg.has_offsets = true;
  msg.offset = offset;
  msg.next = next;
  return msg;
}

TEST(CliProtocol, CursorWritesEachByteOnce) {
  OutputCursor cursor(0);
  EXPECT_EQ(cursor.Accept(Output("hello", 0, 5)), "hello");
  EXPECT_EQ(cursor.next(), 5u);
  // A reconnect replays what was already written: dropped.
  EXPECT_EQ(cursor.Accept(Output("hello", 0, 5)), "");
  EXPECT_EQ(cursor.Accept(Output("llo", 2, 5)), "");
  // Overlapping: only the new part.
  EXPECT_EQ(cursor.Accept(Output("lo world", 3, 11)), " world");
  EXPECT_EQ(cursor.next(), 11u);
  // Overlapping but not byte-for-byte (a U+FFFD replaced a byte): written whole.
  EXPECT_EQ(cursor.Accept(Output("d\xEF\xBF\xBD", 10, 12)), "d\xEF\xBF\xBD");
  EXPECT_EQ(cursor.next(), 12u);

  ServerMessage gap;
  gap.kind = ServerMessage::Kind::kGap;
  gap.from = 12;
  gap.to = 100;
  EXPECT_EQ(cursor.Accept(gap), "");
  EXPECT_EQ(cursor.next(), 100u);
  EXPECT_EQ(cursor.Accept(Output("x", 100, 101)), "x");

  ServerMessage legacy;
  legacy.kind = ServerMessage::Kind::kStdout;
  legacy.data = "no offsets";
  EXPECT_EQ(cursor.Accept(legacy), "no offsets");
  EXPECT_EQ(cursor.next(), 101u);

  ServerMessage catchup = Output("", 500, 500);
  catchup.kind = ServerMessage::Kind::kCatchup;
  OutputCursor resumed(500);
  EXPECT_EQ(resumed.Accept(catchup), "");
  EXPECT_EQ(resumed.next(), 500u);
}

TEST(CliProtocol, ExitStatus) {
  EXPECT_EQ(ExitStatusFromCode(0), 0);
  EXPECT_EQ(ExitStatusFromCode(3), 3);
  EXPECT_EQ(ExitStatusFromCode(137), 137);
  EXPECT_EQ(ExitStatusFromCode(255), 255);
  EXPECT_EQ(ExitStatusFromCode(256), 255);
  EXPECT_EQ(ExitStatusFromCode(100000), 255);
  EXPECT_EQ(ExitStatusFromCode(-1), 1);
}

TEST(CliProtocol, HeaderLookupIgnoresCase) {
  HttpResponse response;
  response.headers = {{"Retry-After", "3"}, {"retry-after", "9"}};
  ASSERT_NE(response.Header("RETRY-AFTER"), nullptr);
  EXPECT_EQ(*response.Header("retry-after"), "3");
  EXPECT_EQ(response.Header("x"), nullptr);
}

// ---- formatting

TEST(CliFormat, Sanitize) {
  EXPECT_EQ(Sanitize("plain", false), "plain");
  EXPECT_EQ(Sanitize("a\nb\tc", false), "a b c");
  EXPECT_EQ(Sanitize("a\nb", true), "a\nb");
  EXPECT_EQ(Sanitize("line\r\n", true), "line\n");
  EXPECT_EQ(Sanitize("\x1b[31mred\x07", false), "?[31mred?");
  EXPECT_EQ(Sanitize("del\x7f", false), "del?");
  EXPECT_EQ(Sanitize("c1 \xC2\x9B csi", false), "c1 ? csi");  // U+009B
  EXPECT_EQ(Sanitize("bad \xff", false), "bad \xEF\xBF\xBD");
  EXPECT_EQ(Sanitize("over \xC0\xAF", false), "over \xEF\xBF\xBD\xEF\xBF\xBD");  // overlong
  EXPECT_EQ(Sanitize("cut \xE2\x82", false), "cut \xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(Sanitize("ok \xE2\x82\xAC \xF0\x9F\x90\x92", false),
            "ok \xE2\x82\xAC \xF0\x9F\x90\x92");
}

TEST(CliFormat, WidthAndTruncation) {
  EXPECT_EQ(DisplayWidth("abc"), 3u);
  EXPECT_EQ(DisplayWidth("\xE2\x82\xAC\xE2\x82\xAC"), 2u);
  EXPECT_EQ(TruncateToWidth("abcdef", 6), "abcdef");
  EXPECT_EQ(TruncateToWidth("abcdef", 4), "abc\xE2\x80\xA6");
  EXPECT_EQ(TruncateToWidth("\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC", 2), "\xE2\x82\xAC\xE2\x80\xA6");
  EXPECT_EQ(TruncateToWidth("abc", 1), "\xE2\x80\xA6");
  EXPECT_EQ(TruncateToWidth("abc", 0), "");
}

TEST(CliFormat, Table) {
  const std::vector<std::string> header = {"ID", "NAME", "TEXT"};
  const std::vector<std::vector<std::string>> rows = {{"1", "alpha", "short"},
                                                      {"22", "b", "a much longer text here"}};
  EXPECT_EQ(FormatTable(header, rows, 0, 0),
            "ID  NAME   TEXT\n"
            "1   alpha  short\n"
            "22  b      a much longer text here\n");
  EXPECT_EQ(FormatTable(header, rows, 0, 10),
            "ID  NAME   TEXT\n"
            "1   alpha  short\n"
            "22  b      a much lo\xE2\x80\xA6\n");
  // 11 columns are taken by ID and NAME: 26 leaves 15 for TEXT.
  EXPECT_EQ(FormatTable(header, rows, 26, 60),
            "ID  NAME   TEXT\n"
            "1   alpha  short\n"
            "22  b      a much longer \xE2\x80\xA6\n");
  // A narrow terminal still shows 10 columns of the last one.
  EXPECT_EQ(FormatTable(header, {{"1", "a", "0123456789abc"}}, 5, 0),
            "ID  NAME  TEXT\n"
            "1   a     012345678\xE2\x80\xA6\n");
  // An empty last cell leaves no trailing spaces.
  EXPECT_EQ(FormatTable({"A", "B"}, {{"x", ""}}, 0, 0), "A  B\nx\n");
}

TEST(CliFormat, Times) {
  EXPECT_EQ(ParseIsoTimeMs("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseIsoTimeMs("1970-01-01T00:00:01.5Z"), 1500);
  EXPECT_EQ(ParseIsoTimeMs("2026-11-21T19:31:44.759Z"), int64_t{1795289504759});
  EXPECT_EQ(ParseIsoTimeMs("2000-03-01T00:00:00Z"), int64_t{951868800000});
  EXPECT_EQ(ParseIsoTimeMs("2000-03-01T01:00:00+01:00"), int64_t{951868800000});
  EXPECT_EQ(ParseIsoTimeMs("2000-02-29T23:00:00-01:00"), int64_t{951868800000});
  EXPECT_EQ(ParseIsoTimeMs("2000-03-01T00:00:00"), std::nullopt);
  EXPECT_EQ(ParseIsoTimeMs("2000-13-01T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseIsoTimeMs("2000-03-01T00:00:00.Z"), std::nullopt);
  EXPECT_EQ(ParseIsoTimeMs("2000-03-01T00:00:00Zjunk"), std::nullopt);
  EXPECT_EQ(ParseIsoTimeMs(""), std::nullopt);

  EXPECT_EQ(FormatAge(-5), "0s");
  EXPECT_EQ(FormatAge(42'999), "42s");
  EXPECT_EQ(FormatAge(5 * 60'000 + 1), "5m");
  EXPECT_EQ(FormatAge(3 * 3'600'000), "3h");
  EXPECT_EQ(FormatAge(47 * 3'600'000), "47h");
  EXPECT_EQ(FormatAge(int64_t{12} * 86'400'000), "12d");

  EXPECT_EQ(FormatDuration(1.54), "1.5s");
  EXPECT_EQ(FormatDuration(125), "2m05s");
  EXPECT_EQ(FormatDuration(3 * 3600 + 7 * 60 + 9), "3h07m");
  EXPECT_EQ(FormatDuration(-1), "-");

  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(uint64_t{12} << 20), "12.0 MiB");
  EXPECT_EQ(FormatBytes(uint64_t{3} << 30), "3.0 GiB");
}

constexpr char kSessionList[] = R"([
  {"id":"s-01A","task":"echo hi","taskPreview":"echo hi","cwd":"/w","command":"/bin/sh -lc echo hi",
   "type":"exec","status":"exited","exitCode":0,"pid":10,"createdAt":"2026-11-21T19:30:00.000Z",
   "endedAt":"2026-11-21T19:30:01.000Z","outputLines":1,"wsClients":0,"owner":"me","labels":[],
   "state":"exited","preset":null,"outputBytes":3,"endReason":"exit","signal":null,"pty":null,
   "resources":null},
  {"id":"s-01B","task":"x","command":"claude --print \u001b[2Jx\nsecond line","type":"print",
   "status":"exited","exitCode":137,"createdAt":"2026-11-21T17:31:44.759Z","owner":null,
   "state":"killed","signal":9},
  {"id":"s-01C","task":"t","command":"t","type":"interactive","status":"running","exitCode":null,
   "createdAt":"2026-11-21T19:31:40.000Z","owner":"ci","state":"starting"},
  {"id":"s-01D","task":"t","command":"false","type":"exec","status":"exited","exitCode":null,
   "createdAt":"bogus","owner":"ci","state":"failed"}
])";

TEST(CliFormat, SessionTable) {
  const int64_t now = *ParseIsoTimeMs("2026-11-21T19:31:44.759Z");
  const Result<std::string> table = FormatSessionTable(kSessionList, now, 0);
  ASSERT_TRUE(table) << table.error().ToString();
  EXPECT_EQ(*table,
            "ID     STATUS            TYPE         AGE  OWNER  COMMAND\n"
            "s-01A  exited (0)        exec         1m   me     /bin/sh -lc echo hi\n"
            "s-01B  killed (SIGKILL)  print        2h   -      claude --print ?[2Jx second line\n"
            "s-01C  starting          interactive  4s   ci     t\n"
            "s-01D  failed            exec         -    ci     false\n");
  // Cut to a terminal's width.
  const Result<std::string> narrow = FormatSessionTable(kSessionList, now, 62);
  ASSERT_TRUE(narrow);
  EXPECT_NE(narrow->find("claude --pr\xE2\x80\xA6\n"), std::string::npos) << *narrow;

  // Not a terminal: the command is cut at 60 characters.
  const std::string long_command(100, 'x');
  const Result<std::string> cut = FormatSessionTable(
      R"([{"id":"s","status":"running","type":"exec","command":")" + long_command + R"("}])", now,
      0);
  ASSERT_TRUE(cut);
  EXPECT_NE(cut->find(std::string(59, 'x') + "\xE2\x80\xA6\n"), std::string::npos) << *cut;

  EXPECT_EQ(*FormatSessionTable("[]", now, 0), "ID  STATUS  TYPE  AGE  OWNER  COMMAND\n");
  EXPECT_FALSE(FormatSessionTable(R"({"error":"x"})", now, 0));
}

TEST(CliFormat, SessionDetail) {
  const json detail = {
      {"id", "s-01A"},
      {"task", "make test"},
      {"cwd", "/srv/w"},
      {"command", "/bin/sh -lc make test"},
      {"type", "exec"},
      {"status", "killed"},
      {"state", "killed"},
      {"exitCode", nullptr},
      {"signal", 9},
      {"pid", 4242},
      {"createdAt", "2026-11-21T19:30:00.000Z"},
      {"endedAt", "2026-11-21T19:32:05.000Z"},
      {"outputLines", 3},
      {"outputBytes", 40},
      {"wsClients", 1},
      {"owner", "me"},
      {"labels", {"ci", "nightly"}},
      {"preset", nullptr},
      {"endReason", "timeout_wall"},
      {"endDetail", "wall deadline 120 s"},
      {"resources", {{"memoryPeakBytes", 1572864}, {"cpuUsageUsec", 2500000}, {"pidsPeak", 7}}},
      {"recentOutput", "one\ntwo\n[stderr] three \x1b[0m\nfour\n"},
  };
  const int64_t now = *ParseIsoTimeMs("2026-11-21T19:35:00.000Z");
  const Result<std::string> text = FormatSessionDetail(detail.dump(), now, 3);
  ASSERT_TRUE(text) << text.error().ToString();
  EXPECT_EQ(*text,
            "ID:           s-01A\n"
            "Status:       killed\n"
            "End reason:   timeout_wall: wall deadline 120 s\n"
            "Signal:       9 (SIGKILL)\n"
            "Type:         exec\n"
            "Owner:        me\n"
            "Labels:       ci, nightly\n"
            "Created:      2026-11-21T19:30:00.000Z (5m ago)\n"
            "Ended:        2026-11-21T19:32:05.000Z (after 2m05s)\n"
            "PID:          4242\n"
            "Cwd:          /srv/w\n"
            "Command:      /bin/sh -lc make test\n"
            "Output:       40 bytes, 3 lines\n"
            "Watchers:     1\n"
            "Memory peak:  1.5 MiB\n"
            "CPU time:     2.5s\n"
            "PIDs peak:    7\n"
            "\n"
            "Recent output (last 3 lines):\n"
            "  two\n"
            "  [stderr] three ?[0m\n"
            "  four\n")
      << *text;

  json running = {
      {"id", "s-2"},         {"status", "running"}, {"state", "starting"},
      {"type", "print"},     {"exitCode", 0},       {"task", "do the thing"},
      {"command", "claude"}, {"recentOutput", ""},  {"pty", {{"rows", 24}, {"cols", 80}}}};
  const Result<std::string> brief = FormatSessionDetail(running.dump(), now, 15);
  ASSERT_TRUE(brief);
  EXPECT_NE(brief->find("Status:       running (starting)\n"), std::string::npos) << *brief;
  EXPECT_NE(brief->find("Exit code:    0\n"), std::string::npos);
  EXPECT_NE(brief->find("Task:         do the thing\n"), std::string::npos);
  EXPECT_NE(brief->find("Terminal:     24x80\n"), std::string::npos);
  EXPECT_NE(brief->find("Recent output: none\n"), std::string::npos);
  EXPECT_FALSE(FormatSessionDetail("[]", now, 3));
}

TEST(CliFormat, PolicyTable) {
  const Result<std::string> table = FormatPolicyTable(
      R"({"policies":[{"name":"claude","type":"print","description":"Claude Code, print mode","bypassesAgentPermissions":true,
                       "limits":{"memoryMaxBytes":4294967296,"pidsMax":2048,"cpuMaxPercent":200,"wallSeconds":14400,"idleSeconds":0},"network":"host"},
                      {"name":"shell","type":"exec","description":"plain commands","bypassesAgentPermissions":false,
                       "limits":{"memoryMaxBytes":2147483648,"pidsMax":512,"cpuMaxPercent":null,"wallSeconds":3600,"idleSeconds":900},"network":"none"},
                      {"name":"old","type":"exec","description":"from an older server"}]})",
      0);
  ASSERT_TRUE(table) << table.error().ToString();
  EXPECT_EQ(
      *table,
      "NAME    TYPE   BYPASSES-PROMPTS  NETWORK  MEMORY   WALL   IDLE    DESCRIPTION\n"
      "claude  print  yes               host     4.0 GiB  4h00m  none    Claude Code, print mode\n"
      "shell   exec   no                none     2.0 GiB  1h00m  15m00s  plain commands\n"
      "old     exec   -                 -        -        -      -       from an older server\n");
  EXPECT_FALSE(FormatPolicyTable("[]", 0));
}

TEST(CliFormat, HttpErrors) {
  HttpResponse response;
  response.status = 400;
  response.reason = "Bad Request";
  response.body = R"({"error":"labels must be strings","code":"bad_request","field":"/labels/3"})";
  EXPECT_EQ(FormatHttpError(response, ""), "labels must be strings (bad_request, field /labels/3)");

  response.status = 404;
  response.body = R"({"error":"Not found"})";  // the original's shape
  EXPECT_EQ(FormatHttpError(response, ""), "Not found (HTTP 404)");

  response.status = 429;
  response.body = R"({"error":"too many sessions","code":"capacity"})";
  response.headers = {{"Retry-After", "5"}};
  EXPECT_EQ(FormatHttpError(response, ""), "too many sessions (capacity); retry after 5 s");
  response.headers.clear();

  response.status = 401;
  response.body = R"({"error":"Unauthorized","code":"unauthorized"})";
  std::string text = FormatHttpError(response, "MONKEYPROOF_TOKEN");
  EXPECT_EQ(text.rfind("Unauthorized (unauthorized); check the token (", 0), 0u) << text;
  EXPECT_NE(text.find("--token-file"), std::string::npos);
  EXPECT_NE(text.find("it came from MONKEYPROOF_TOKEN"), std::string::npos);
  EXPECT_NE(FormatHttpError(response, "").find("none was given"), std::string::npos);

  response.status = 502;
  response.reason = "Bad Gateway";
  response.body = "<html>upstream \x1b[2J down</html>\nmore";
  EXPECT_EQ(FormatHttpError(response, ""), "HTTP 502 Bad Gateway: <html>upstream ?[2J down</html>");

  response.body = R"({"error":{"code":"internal","message":"boom"}})";
  EXPECT_EQ(FormatHttpError(response, ""), "boom (internal)");
  EXPECT_EQ(FormatHttpError(response, "", "s-1"), "boom (internal)");  // not a not-found
}

// `monkeyproof kill nosuch` (show, send, logs, attach) names the session it could not find.
TEST(CliFormat, NotFoundNamesTheSession) {
  HttpResponse response;
  response.status = 404;
  response.body = R"({"error":"Not found","code":"not_found"})";
  EXPECT_EQ(FormatHttpError(response, "", "nosuch"),
            "no session nosuch: Not found (not_found); list the sessions with: monkeyproof ls");
  EXPECT_EQ(FormatHttpError(response, ""), "Not found (not_found)");  // no session asked about
  response.body = R"({"error":"Not found"})";                         // the original's shape
  EXPECT_EQ(FormatHttpError(response, "", "s-9"),
            "no session s-9: Not found (HTTP 404); list the sessions with: monkeyproof ls");
  // Input to an unknown session: 400 with code not_found, as the original's status.
  response.status = 400;
  response.body = R"({"error":"Session not found or not running","code":"not_found"})";
  EXPECT_EQ(FormatHttpError(response, "", "s-\x1b[2J"),
            "no session s-?[2J: Session not found or not running (not_found); list the sessions "
            "with: monkeyproof ls");
  response.body = R"({"error":"session s-1 has ended","code":"wrong_state"})";
  EXPECT_EQ(FormatHttpError(response, "", "s-1"), "session s-1 has ended (wrong_state)");
}

}  // namespace
}  // namespace mp::cli
