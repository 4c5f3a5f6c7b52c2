// The commands of `monkeyproof`: each takes its parsed arguments and the resolved
// configuration, talks to the server and returns the process exit status (0 success, 1 error;
// run and attach: the session's status). commands.cc holds the request/response commands,
// stream.cc the WebSocket ones (run, attach). Runs in the CLI only, on the main thread
// (stream.cc adds one stdin reader thread while it streams).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cli/args.h"
#include "cli/config.h"
#include "cli/protocol.h"
#include "cli/transport.h"

namespace mp::cli {

struct Context {
  ResolvedConfig config;
  bool json = false;  // --json
};

int RunRun(const Context& ctx, const RunCommand& cmd);
int RunAttach(const Context& ctx, const AttachCommand& cmd);
int RunLs(const Context& ctx, const LsCommand& cmd);
int RunShow(const Context& ctx, const ShowCommand& cmd);
int RunLogs(const Context& ctx, const LogsCommand& cmd);
int RunSend(const Context& ctx, const SendCommand& cmd);
int RunKill(const Context& ctx, const KillCommand& cmd);
int RunPolicies(const Context& ctx);
int RunVersion(const Context& ctx, const VersionCommand& cmd);
int RunToken(const Context& ctx, const TokenCommand& cmd);

// ---- Shared by commands.cc and stream.cc.

// Prints "monkeyproof: <message>" and a newline on stderr; returns 1.
int Fail(std::string_view message);
// Sends a request; returns the answer when its status is 2xx, else prints the error (transport
// failure, or the server's error body via FormatHttpError, which names `session` when the
// request was about one that does not exist) and returns nullopt.
std::optional<HttpResponse> Call(HttpClient& client, const Context& ctx, std::string_view method,
                                 std::string_view path, std::string_view body = {},
                                 std::string_view session = {});
// Writes a JSON body to stdout as the server sent it, newline-terminated.
void PrintJson(std::string_view body);

}  // namespace mp::cli
