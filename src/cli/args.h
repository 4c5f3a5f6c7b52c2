// Command-line parsing for the `monkeyproof` client: argv becomes an Invocation (the global
// options plus one typed command), and the help texts live here too (docs/cli.md describes the
// same surface). Runs in the CLI only. Pure functions over strings: no I/O, no syscalls, no
// exceptions escape; plain value types, not shared between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mp::cli {

// Options accepted before or after the command name. Unset members fall back to the
// environment, then the config file, then the defaults (config.h, ResolveConfig).
struct GlobalOptions {
  std::optional<std::string> url;          // --url
  std::optional<std::string> token;        // --token
  std::optional<std::string> token_file;   // --token-file
  std::optional<std::string> config;       // --config
  std::optional<std::string> ca_file;      // --ca-file: CAs for an https:// server
  std::optional<std::string> client_cert;  // --client-cert: for servers that ask (mTLS)
  std::optional<std::string> client_key;   // --client-key
  bool json = false;                       // --json: machine-readable output
};

// `run [options] [--] TASK...`: POST /sessions, then stream the output (or --detach).
struct RunCommand {
  std::string type;                   // exec | print | interactive; empty: the server's default
  std::optional<std::string> preset;  // --preset
  std::optional<std::string> cwd;     // --cwd
  std::optional<std::string> owner;   // --owner
  std::vector<std::string> labels;    // --label, repeatable
  std::vector<std::pair<std::string, std::string>> env;  // --env K=V, repeatable, in order
  std::optional<uint32_t> max_turns;                     // --max-turns, 1..10000
  std::optional<uint64_t> memory_bytes;                  // --memory, bytes (suffixes K/M/G/T)
  std::optional<uint64_t> wall_seconds;                  // --wall, seconds (>= 1)
  bool detach = false;                                   // --detach
  bool forward_stdin = false;                            // --stdin
  std::string task;                                      // the TASK words joined with spaces
};

// `ls`: GET /sessions with filters.
struct LsCommand {
  std::optional<std::string> owner;
  std::optional<std::string> label;
  std::optional<std::string> status;  // running|exited|killed|starting|failed
  std::optional<uint32_t> limit;      // 1..1000
};

struct ShowCommand {
  std::string id;
};

// `logs ID [-f] [--since N]`: raw bytes from GET /sessions/ID/output.
struct LogsCommand {
  std::string id;
  bool follow = false;
  uint64_t since = 0;  // byte offset
};

struct AttachCommand {
  std::string id;
};

// `send ID [-n] TEXT...|-`
struct SendCommand {
  std::string id;
  bool newline = true;      // false with -n
  bool from_stdin = false;  // TEXT is "-": read all of stdin
  std::string text;         // TEXT words joined with spaces (empty when from_stdin)
};

struct KillCommand {
  std::vector<std::string> ids;  // one or more
};

struct PoliciesCommand {};

struct VersionCommand {
  bool client_only = false;  // --client: do not ask the server
};

// `token create|ls|revoke` (cli/token_command.h): scoped tokens through POST, GET and
// DELETE /tokens; the configured token must be an admin token.
struct TokenCommand {
  enum class Action { kCreate, kList, kRevoke };
  Action action = Action::kList;
  // create: the scope. `sessions` is the scope expression the API takes ("session:ID",
  // "owner:NAME" or "label:LABEL"); `rights` among read, input, kill, create; `presets` and
  // `workspaces` (absolute directories, in the order given) for create; `ttl_seconds` >= 1.
  std::string sessions;
  std::vector<std::string> rights;
  std::vector<std::string> presets;
  std::vector<std::string> workspaces;
  uint64_t ttl_seconds = 3600;
  std::vector<std::string> ids;  // revoke: token ids (16 lowercase hex digits)
};

// `help [COMMAND]`, `--help`, `COMMAND --help`.
struct HelpCommand {
  std::string topic;  // a command name, or empty for the overview
};

using Command =
    std::variant<HelpCommand, RunCommand, LsCommand, ShowCommand, LogsCommand, AttachCommand,
                 SendCommand, KillCommand, PoliciesCommand, VersionCommand, TokenCommand>;

struct Invocation {
  GlobalOptions global;
  Command command;
};

// A usage error: exit status 2. `command` names the command whose --help to point at (empty:
// the overview).
struct UsageError {
  std::string message;
  std::string command;
};

using ParseResult = std::variant<Invocation, UsageError>;  // index 0: success

// `args` is argv without the program name. No arguments at all is a HelpCommand.
ParseResult ParseArgs(const std::vector<std::string>& args);

// The help text of one command ("run", "ls", ...), or the overview for an empty or unknown
// name. Ends with a newline.
std::string_view HelpText(std::string_view command);

// Every command name, in the order the overview lists them.
const std::vector<std::string_view>& CommandNames();

// "4096", "512K", "512M", "2G", "1T" (binary multiples; "KiB"/"MB"-style suffixes are accepted
// as the same binary unit). nullopt on anything else, on zero and on overflow.
std::optional<uint64_t> ParseByteSize(std::string_view text);

// A decimal unsigned integer: digits only, no sign or spaces, fits uint64.
std::optional<uint64_t> ParseDecimal(std::string_view text);

}  // namespace mp::cli
