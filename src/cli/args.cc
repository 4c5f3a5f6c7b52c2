#include "cli/args.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>

#include "cli/token_command.h"

namespace mp::cli {
namespace {

constexpr std::string_view kOverviewHelp =
    R"(Usage: monkeyproof [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]

The command-line client of a MonkeyProof host: it talks to monkeyproof-api over HTTP(S) and
WebSocket.

Commands:
  run       start a session and stream its output (or return at once with --detach)
  ls        list sessions
  show      show one session in detail
  logs      print a session's raw output; -f follows it
  attach    connect this terminal to an interactive session
  send      send a line of input to a session
  kill      kill sessions
  policies  list the server's policies (presets)
  token     create, list and revoke scoped tokens (needs an admin token)
  version   print the client's and the server's versions
  help      show the help of a command

Global options (before or after the command):
  --url URL          the server, http:// or https:// (env MONKEYPROOF_URL; default
                     http://127.0.0.1:3200)
  --token TOKEN      the API token (env MONKEYPROOF_TOKEN); visible to other local users in
                     the process list, so prefer --token-file or the environment
  --token-file FILE  read the token from FILE (env MONKEYPROOF_TOKEN_FILE)
  --config FILE      the config file (default $XDG_CONFIG_HOME/monkeyproof/cli.conf, else
                     ~/.config/monkeyproof/cli.conf); lines of `key = value` with the keys
                     url, token, token_file, ca_file, client_cert and client_key
  --ca-file FILE     PEM CAs an https:// server's certificate must chain to (env
                     MONKEYPROOF_CA_FILE; default: the system's CAs)
  --client-cert FILE  PEM client certificate for servers that ask for one (mTLS; env
                     MONKEYPROOF_CLIENT_CERT); needs --client-key
  --client-key FILE  its PEM private key (env MONKEYPROOF_CLIENT_KEY)
  --json             print the server's JSON instead of tables
  -h, --help         show help

Each setting comes from the flag, else the environment, else the config file, else the
default.

https:// URLs speak TLS 1.2 or 1.3 and verify the server's certificate and name.

Exit status: 0 success, 1 error, 2 usage error; run and attach exit with the session's status.

Run 'monkeyproof COMMAND --help' for the options of a command.
)";

constexpr std::string_view kRunHelp = R"(Usage: monkeyproof run [OPTIONS] [--] TASK...

Starts a session (POST /sessions) with the TASK words joined by spaces as its task, prints its
id on stderr, then streams its output: the session's stdout to stdout, its stderr to stderr,
byte for byte as it arrives. A dropped connection is resumed from the last offset received,
so nothing is lost or repeated. Exits with the session's exit status (128+N when a signal N
ended it). Ctrl-C stops watching; the session keeps running.

Options end at the first TASK word: `monkeyproof run ls -la` runs `ls -la`.

Options:
  --type TYPE        exec (default), print or interactive
  --preset NAME      a policy (see `monkeyproof policies`); needs --type print or interactive
  --cwd DIR          the workspace inside the policy's roots; relative: below the default
                     workspace; absent: the default workspace
  --owner NAME       free text, for filtering with `ls --owner`
  --label LABEL      a label (repeatable)
  --env K=V          an environment variable, where the policy allows it (repeatable)
  --max-turns N      --max-turns N for claude presets (1-10000)
  --memory BYTES     memory limit; suffixes K, M, G, T (binary), e.g. 512M
  --wall SECONDS     wall-clock limit in seconds
  --detach           print the session id (the session JSON with --json) and return
  --stdin            forward this program's stdin to the session; its EOF closes the
                     session's stdin

Examples:
  monkeyproof run -- make -j4 test
  monkeyproof run --type print --preset claude --cwd /srv/monkeyproof/workspaces/app "fix the failing test"
  id=$(monkeyproof run --detach --label nightly ./long-job.sh)
  printf 'a\nb\n' | monkeyproof run --stdin -- sort
)";

constexpr std::string_view kLsHelp = R"(Usage: monkeyproof ls [OPTIONS]

Lists sessions in creation order: ID, STATUS, TYPE, AGE, OWNER, COMMAND. The command is cut
to the terminal's width (to 60 characters when stdout is not a terminal). With --json the
server's array is printed as is.

Options:
  --owner NAME     only sessions of this owner
  --label LABEL    only sessions with this label
  --status STATUS  running, exited, killed, or an exact state: starting, failed
  --limit N        at most N sessions (1-1000)

Example:
  monkeyproof ls --status running --owner ci
)";

constexpr std::string_view kShowHelp = R"(Usage: monkeyproof show ID

Shows one session: status and end reason, exit code or signal, times, pid, workspace,
command, resources and the last lines of its output (control characters made visible; use
`logs` for the exact bytes). With --json the server's SessionDetail is printed as is.

Example:
  monkeyproof show s-01JD3K4Q5W
)";

constexpr std::string_view kLogsHelp = R"(Usage: monkeyproof logs ID [-f] [--since N]

Writes a session's output to stdout exactly as it was produced (binary-safe), from byte
offset N (default 0) to the end of what is held. Output cut by the transcript cap is reported
on stderr as a gap.

Options:
  -f, --follow   keep waiting for new output until the session has ended
  --since N      start at byte offset N

Examples:
  monkeyproof logs s-01JD3K4Q5W > out.bin
  monkeyproof logs -f s-01JD3K4Q5W
)";

constexpr std::string_view kAttachHelp = R"(Usage: monkeyproof attach ID

Connects this terminal to an interactive session: the terminal goes into raw mode, keys go to
the session, its screen comes back, and the window size follows this terminal's. Ctrl-]
detaches (the session keeps running). Exits with the session's status when it ends.

Example:
  monkeyproof attach s-01JD3K4Q5W
)";

constexpr std::string_view kSendHelp = R"(Usage: monkeyproof send ID [-n] TEXT...
       monkeyproof send ID [-n] -

Sends the TEXT words joined by spaces, plus a newline, to the session's stdin
(POST /sessions/ID/input). `-` sends all of stdin instead. The input must be UTF-8 text.

Options:
  -n, --no-newline   do not append a newline

Examples:
  monkeyproof send s-01JD3K4Q5W yes
  git diff | monkeyproof send -n s-01JD3K4Q5W -
)";

constexpr std::string_view kKillHelp = R"(Usage: monkeyproof kill ID...

Kills each session's whole process tree (DELETE /sessions/ID) and prints `killed ID`. Killing
a session that has already ended succeeds.

Example:
  monkeyproof kill s-01JD3K4Q5W
)";

constexpr std::string_view kPoliciesHelp = R"(Usage: monkeyproof policies

Lists the server's policies (presets): NAME, TYPE, BYPASSES-PROMPTS (whether the agent runs
without asking for permission), NETWORK (none or host), MEMORY, WALL and IDLE (the memory cap
and deadlines, the most a session may ask for; "none" is no deadline), DESCRIPTION. With --json
the server's answer, which also has pidsMax and cpuMaxPercent, is printed as is.
)";

constexpr std::string_view kVersionHelp = R"(Usage: monkeyproof version [--client]

Prints this client's version and asks the server for its own (GET /version).

Options:
  --client   only the client's version; do not contact the server
)";

constexpr std::string_view kHelpHelp = R"(Usage: monkeyproof help [COMMAND]

Shows the overview, or the help of COMMAND.
)";

struct OptionSpec {
  std::string_view name;  // long name, without "--"
  char short_name;        // 0 when none
  bool takes_value;
};

struct CommandSpec {
  std::string_view name;
  std::string_view help;
  std::vector<OptionSpec> options;
  // Options end after this many positional arguments (0: never), so that `run ls -la` and
  // `send ID -x` keep their words.
  size_t options_end_after = 0;
};

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec> kCommands = {
      {"run",
       kRunHelp,
       {{"type", 0, true},
        {"preset", 0, true},
        {"cwd", 0, true},
        {"owner", 0, true},
        {"label", 0, true},
        {"env", 0, true},
        {"max-turns", 0, true},
        {"memory", 0, true},
        {"wall", 0, true},
        {"detach", 0, false},
        {"stdin", 0, false}},
       1},
      {"ls",
       kLsHelp,
       {{"owner", 0, true}, {"label", 0, true}, {"status", 0, true}, {"limit", 0, true}},
       0},
      {"show", kShowHelp, {}, 0},
      {"logs", kLogsHelp, {{"follow", 'f', false}, {"since", 0, true}}, 0},
      {"attach", kAttachHelp, {}, 0},
      {"send", kSendHelp, {{"no-newline", 'n', false}}, 2},
      {"kill", kKillHelp, {}, 0},
      {"policies", kPoliciesHelp, {}, 0},
      {"version", kVersionHelp, {{"client", 0, false}}, 0},
      {"token",
       TokenHelpText(),
       {{"session", 0, true},
        {"owner", 0, true},
        {"label", 0, true},
        {"rights", 0, true},
        {"preset", 0, true},
        {"workspace", 0, true},
        {"ttl", 0, true}},
       0},
      {"help", kHelpHelp, {}, 0},
  };
  return kCommands;
}

constexpr std::array<OptionSpec, 9> kGlobalOptions = {{{"url", 0, true},
                                                       {"token", 0, true},
                                                       {"token-file", 0, true},
                                                       {"config", 0, true},
                                                       {"ca-file", 0, true},
                                                       {"client-cert", 0, true},
                                                       {"client-key", 0, true},
                                                       {"json", 0, false},
                                                       {"help", 'h', false}}};

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& spec : Commands()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

const OptionSpec* FindOption(const OptionSpec* begin, const OptionSpec* end, std::string_view name,
                             char short_name) {
  for (const OptionSpec* it = begin; it != end; ++it) {
    if (short_name != 0 ? it->short_name == short_name : it->name == name) return it;
  }
  return nullptr;
}

// One command option as given: its long name and value (empty for flags).
struct GivenOption {
  std::string_view name;
  std::string value;
};

std::string JoinWords(const std::vector<std::string>& words, size_t first) {
  std::string out;
  for (size_t i = first; i < words.size(); ++i) {
    if (i > first) out += ' ';
    out += words[i];
  }
  return out;
}

UsageError Usage(std::string message, std::string_view command) {
  return UsageError{std::move(message), std::string(command)};
}

// Positional-count checks shared by the commands that take exactly one session id.
std::optional<UsageError> ExpectOneId(std::string_view command,
                                      const std::vector<std::string>& positionals) {
  if (positionals.empty()) return Usage(std::string(command) + " needs a session ID", command);
  if (positionals.size() > 1) {
    return Usage(std::string(command) + " takes one session ID, got " +
                     std::to_string(positionals.size()) + " arguments",
                 command);
  }
  if (positionals[0].empty()) return Usage("the session ID is empty", command);
  return std::nullopt;
}

std::optional<UsageError> ExpectNone(std::string_view command,
                                     const std::vector<std::string>& positionals) {
  if (!positionals.empty()) {
    return Usage(std::string(command) + " takes no arguments (got '" + positionals[0] + "')",
                 command);
  }
  return std::nullopt;
}

ParseResult BuildRun(GlobalOptions global, const std::vector<GivenOption>& options,
                     const std::vector<std::string>& positionals) {
  RunCommand run;
  for (const GivenOption& opt : options) {
    if (opt.name == "type") {
      if (opt.value != "exec" && opt.value != "print" && opt.value != "interactive") {
        return Usage("--type must be exec, print or interactive, not '" + opt.value + "'", "run");
      }
      run.type = opt.value;
    } else if (opt.name == "preset") {
      run.preset = opt.value;
    } else if (opt.name == "cwd") {
      run.cwd = opt.value;
    } else if (opt.name == "owner") {
      run.owner = opt.value;
    } else if (opt.name == "label") {
      run.labels.push_back(opt.value);
    } else if (opt.name == "env") {
      const size_t eq = opt.value.find('=');
      if (eq == std::string::npos || eq == 0) {
        return Usage("--env wants NAME=VALUE, not '" + opt.value + "'", "run");
      }
      run.env.emplace_back(opt.value.substr(0, eq), opt.value.substr(eq + 1));
    } else if (opt.name == "max-turns") {
      const std::optional<uint64_t> n = ParseDecimal(opt.value);
      if (!n || *n < 1 || *n > 10000) {
        return Usage("--max-turns must be a number from 1 to 10000, not '" + opt.value + "'",
                     "run");
      }
      run.max_turns = static_cast<uint32_t>(*n);
    } else if (opt.name == "memory") {
      run.memory_bytes = ParseByteSize(opt.value);
      if (!run.memory_bytes) {
        return Usage(
            "--memory must be a positive size like 536870912, 512M or 2G, not '" + opt.value + "'",
            "run");
      }
    } else if (opt.name == "wall") {
      run.wall_seconds = ParseDecimal(opt.value);
      if (!run.wall_seconds || *run.wall_seconds == 0) {
        return Usage("--wall must be a positive number of seconds, not '" + opt.value + "'", "run");
      }
    } else if (opt.name == "detach") {
      run.detach = true;
    } else if (opt.name == "stdin") {
      run.forward_stdin = true;
    }
  }
  if (run.detach && run.forward_stdin) {
    return Usage("--stdin forwards stdin while the output streams; it cannot go with --detach",
                 "run");
  }
  if (run.preset && (run.type.empty() || run.type == "exec")) {
    return Usage("--preset needs --type print or --type interactive (exec sessions take no preset)",
                 "run");
  }
  run.task = JoinWords(positionals, 0);
  if (run.task.empty()) return Usage("run needs a TASK", "run");
  return Invocation{std::move(global), std::move(run)};
}

ParseResult BuildLs(GlobalOptions global, const std::vector<GivenOption>& options,
                    const std::vector<std::string>& positionals) {
  if (auto err = ExpectNone("ls", positionals)) return *err;
  LsCommand ls;
  for (const GivenOption& opt : options) {
    if (opt.name == "owner") {
      ls.owner = opt.value;
    } else if (opt.name == "label") {
      ls.label = opt.value;
    } else if (opt.name == "status") {
      static constexpr std::array<std::string_view, 5> kStatuses = {"running", "exited", "killed",
                                                                    "starting", "failed"};
      if (std::find(kStatuses.begin(), kStatuses.end(), opt.value) == kStatuses.end()) {
        return Usage(
            "--status must be running, exited, killed, starting or failed, not '" + opt.value + "'",
            "ls");
      }
      ls.status = opt.value;
    } else if (opt.name == "limit") {
      const std::optional<uint64_t> n = ParseDecimal(opt.value);
      if (!n || *n < 1 || *n > 1000) {
        return Usage("--limit must be a number from 1 to 1000, not '" + opt.value + "'", "ls");
      }
      ls.limit = static_cast<uint32_t>(*n);
    }
  }
  return Invocation{std::move(global), std::move(ls)};
}

ParseResult BuildLogs(GlobalOptions global, const std::vector<GivenOption>& options,
                      const std::vector<std::string>& positionals) {
  if (auto err = ExpectOneId("logs", positionals)) return *err;
  LogsCommand logs;
  logs.id = positionals[0];
  for (const GivenOption& opt : options) {
    if (opt.name == "follow") {
      logs.follow = true;
    } else if (opt.name == "since") {
      const std::optional<uint64_t> n = ParseDecimal(opt.value);
      if (!n) return Usage("--since must be a byte offset, not '" + opt.value + "'", "logs");
      logs.since = *n;
    }
  }
  return Invocation{std::move(global), std::move(logs)};
}

ParseResult BuildSend(GlobalOptions global, const std::vector<GivenOption>& options,
                      const std::vector<std::string>& positionals) {
  if (positionals.size() < 2) {
    return Usage("send needs a session ID and TEXT (or - to send stdin)", "send");
  }
  if (positionals[0].empty()) return Usage("the session ID is empty", "send");
  SendCommand send;
  send.id = positionals[0];
  for (const GivenOption& opt : options) {
    if (opt.name == "no-newline") send.newline = false;
  }
  if (positionals.size() == 2 && positionals[1] == "-") {
    send.from_stdin = true;
  } else {
    send.text = JoinWords(positionals, 1);
  }
  return Invocation{std::move(global), std::move(send)};
}

ParseResult Build(const CommandSpec& spec, GlobalOptions global,
                  const std::vector<GivenOption>& options,
                  const std::vector<std::string>& positionals) {
  const std::string_view name = spec.name;
  if (name == "run") return BuildRun(std::move(global), options, positionals);
  if (name == "ls") return BuildLs(std::move(global), options, positionals);
  if (name == "logs") return BuildLogs(std::move(global), options, positionals);
  if (name == "send") return BuildSend(std::move(global), options, positionals);
  if (name == "show" || name == "attach") {
    if (auto err = ExpectOneId(name, positionals)) return *err;
    if (name == "show") return Invocation{std::move(global), ShowCommand{positionals[0]}};
    return Invocation{std::move(global), AttachCommand{positionals[0]}};
  }
  if (name == "kill") {
    if (positionals.empty()) return Usage("kill needs at least one session ID", "kill");
    for (const std::string& id : positionals) {
      if (id.empty()) return Usage("the session ID is empty", "kill");
    }
    return Invocation{std::move(global), KillCommand{positionals}};
  }
  if (name == "policies") {
    if (auto err = ExpectNone(name, positionals)) return *err;
    return Invocation{std::move(global), PoliciesCommand{}};
  }
  if (name == "token") {
    std::vector<std::pair<std::string, std::string>> given;
    for (const GivenOption& opt : options) given.emplace_back(opt.name, opt.value);
    auto token = BuildTokenCommand(given, positionals);
    if (auto* error = std::get_if<std::string>(&token)) return Usage(*error, name);
    return Invocation{std::move(global), std::get<TokenCommand>(std::move(token))};
  }
  if (name == "version") {
    if (auto err = ExpectNone(name, positionals)) return *err;
    VersionCommand version;
    version.client_only = !options.empty();  // --client is its only option
    return Invocation{std::move(global), version};
  }
  // help [COMMAND]
  if (positionals.size() > 1) return Usage("help takes at most one COMMAND", "help");
  if (positionals.size() == 1 && FindCommand(positionals[0]) == nullptr) {
    return Usage("unknown command '" + positionals[0] + "'", "");
  }
  return Invocation{std::move(global),
                    HelpCommand{positionals.empty() ? std::string() : positionals[0]}};
}

}  // namespace

ParseResult ParseArgs(const std::vector<std::string>& args) {
  if (args.empty()) return Invocation{GlobalOptions{}, HelpCommand{}};

  GlobalOptions global;
  const CommandSpec* spec = nullptr;
  std::vector<GivenOption> options;
  std::vector<std::string> positionals;
  bool help = false;
  bool version_flag = false;  // --version before any command: `version --client`
  bool options_done = false;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const std::string_view command = spec != nullptr ? spec->name : std::string_view();
    if (!options_done && arg == "--") {
      if (spec == nullptr) return Usage("'--' must follow a command", "");
      options_done = true;
      continue;
    }
    if (!options_done && arg.size() > 1 && arg[0] == '-') {
      std::string_view name;
      std::optional<std::string> inline_value;
      char short_name = 0;
      if (arg[1] == '-') {
        const std::string_view body = std::string_view(arg).substr(2);
        const size_t eq = body.find('=');
        name = body.substr(0, eq);
        if (eq != std::string_view::npos) inline_value = std::string(body.substr(eq + 1));
      } else if (arg.size() == 2) {
        short_name = arg[1];
      } else {
        return Usage("unknown option '" + arg + "'", command);
      }
      bool is_global = true;
      const OptionSpec* opt = FindOption(
          kGlobalOptions.data(), kGlobalOptions.data() + kGlobalOptions.size(), name, short_name);
      if (opt == nullptr && spec != nullptr) {
        is_global = false;
        opt = FindOption(spec->options.data(), spec->options.data() + spec->options.size(), name,
                         short_name);
      }
      if (opt == nullptr) {
        if (spec == nullptr && name == "version" && !inline_value) {
          version_flag = true;
          continue;
        }
        return Usage("unknown option '" + arg + "'", command);
      }
      const std::string shown = "--" + std::string(opt->name);
      std::string value;
      if (opt->takes_value) {
        if (inline_value) {
          value = std::move(*inline_value);
        } else if (i + 1 < args.size()) {
          value = args[++i];
        } else {
          return Usage("option " + shown + " needs a value", command);
        }
        if (value.empty()) return Usage("option " + shown + " needs a non-empty value", command);
      } else if (inline_value) {
        return Usage("option " + shown + " takes no value", command);
      }
      if (!is_global) {
        options.push_back(GivenOption{opt->name, std::move(value)});
      } else if (opt->name == "url") {
        global.url = std::move(value);
      } else if (opt->name == "token") {
        global.token = std::move(value);
      } else if (opt->name == "token-file") {
        global.token_file = std::move(value);
      } else if (opt->name == "config") {
        global.config = std::move(value);
      } else if (opt->name == "ca-file") {
        global.ca_file = std::move(value);
      } else if (opt->name == "client-cert") {
        global.client_cert = std::move(value);
      } else if (opt->name == "client-key") {
        global.client_key = std::move(value);
      } else if (opt->name == "json") {
        global.json = true;
      } else if (opt->name == "help") {
        help = true;
      }
      continue;
    }
    if (spec == nullptr) {
      spec = FindCommand(arg);
      if (spec == nullptr) return Usage("unknown command '" + arg + "'", "");
      continue;
    }
    positionals.push_back(arg);
    if (spec->options_end_after != 0 && positionals.size() >= spec->options_end_after) {
      options_done = true;
    }
  }

  if (help) {
    return Invocation{std::move(global),
                      HelpCommand{spec != nullptr ? std::string(spec->name) : std::string()}};
  }
  if (spec == nullptr && version_flag) return Invocation{std::move(global), VersionCommand{true}};
  if (spec == nullptr) return Usage("no command given", "");
  if (global.token && global.token_file) {
    return Usage("give --token or --token-file, not both", spec->name);
  }
  return Build(*spec, std::move(global), options, positionals);
}

std::string_view HelpText(std::string_view command) {
  if (const CommandSpec* spec = FindCommand(command)) return spec->help;
  return kOverviewHelp;
}

const std::vector<std::string_view>& CommandNames() {
  static const std::vector<std::string_view> kNames = [] {
    std::vector<std::string_view> names;
    for (const CommandSpec& spec : Commands()) names.push_back(spec.name);
    return names;
  }();
  return kNames;
}

std::optional<uint64_t> ParseDecimal(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::optional<uint64_t> ParseByteSize(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::optional<uint64_t> number = ParseDecimal(text.substr(0, digits));
  if (!number || *number == 0) return std::nullopt;
  std::string suffix;
  for (const char c : text.substr(digits)) {
    suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  unsigned shift = 0;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else if (suffix == "k" || suffix == "kb" || suffix == "kib") {
    shift = 10;
  } else if (suffix == "m" || suffix == "mb" || suffix == "mib") {
    shift = 20;
  } else if (suffix == "g" || suffix == "gb" || suffix == "gib") {
    shift = 30;
  } else if (suffix == "t" || suffix == "tb" || suffix == "tib") {
    shift = 40;
  } else {
    return std::nullopt;
  }
  if (shift != 0 && *number > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return *number << shift;
}

}  // namespace mp::cli
