#include "cli/commands.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <set>
#include <thread>
#include <utility>

#include "cli/format.h"
#include "cli/terminal.h"
#include "cli/token_command.h"
#include "common/version.h"

namespace mp::cli {
namespace {

constexpr size_t kShowTailLines = 15;
constexpr std::chrono::milliseconds kPollMin{50};
constexpr std::chrono::milliseconds kPollMax{1000};
constexpr int kMaxRetries = 10;  // logs -f: consecutive transport failures before giving up

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Print(std::string_view text) {
  if (Result<void> written = WriteAll(STDOUT_FILENO, text); !written) {
    (void)Fail(written.error().ToString());
  }
}

// Formats an answer for humans, or prints it as is with --json.
int PrintFormatted(const Context& ctx, const HttpResponse& response,
                   const Result<std::string>& formatted) {
  if (ctx.json) {
    PrintJson(response.body);
    return 0;
  }
  if (!formatted) return Fail(formatted.error().ToString());
  Print(*formatted);
  return 0;
}

Result<std::string> ReadAllStdin() {
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read(stdin)");
    }
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

int Fail(std::string_view message) {
  std::string line = "monkeyproof: ";
  line += message;
  line += '\n';
  (void)WriteAll(STDERR_FILENO, line);
  return 1;
}

std::optional<HttpResponse> Call(HttpClient& client, const Context& ctx, std::string_view method,
                                 std::string_view path, std::string_view body,
                                 std::string_view session) {
  Result<HttpResponse> response = client.Request(method, path, body);
  if (!response) {
    (void)Fail(response.error().what);
    return std::nullopt;
  }
  if (response->status < 200 || response->status > 299) {
    (void)Fail(FormatHttpError(*response, ctx.config.token_source, session));
    return std::nullopt;
  }
  return std::move(*response);
}

void PrintJson(std::string_view body) {
  std::string text(body);
  if (text.empty() || text.back() != '\n') text += '\n';
  Print(text);
}

int RunLs(const Context& ctx, const LsCommand& cmd) {
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  const std::optional<HttpResponse> response = Call(client, ctx, "GET", ListPath(cmd));
  if (!response) return 1;
  if (ctx.json) return PrintFormatted(ctx, *response, std::string());
  return PrintFormatted(ctx, *response, FormatSessionTable(response->body, NowMs(), StdoutWidth()));
}

int RunShow(const Context& ctx, const ShowCommand& cmd) {
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  const std::optional<HttpResponse> response =
      Call(client, ctx, "GET", SessionPath(cmd.id), {}, cmd.id);
  if (!response) return 1;
  if (ctx.json) return PrintFormatted(ctx, *response, std::string());
  return PrintFormatted(ctx, *response,
                        FormatSessionDetail(response->body, NowMs(), kShowTailLines));
}

int RunPolicies(const Context& ctx) {
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  const std::optional<HttpResponse> response = Call(client, ctx, "GET", "/policies");
  if (!response) return 1;
  if (ctx.json) return PrintFormatted(ctx, *response, std::string());
  return PrintFormatted(ctx, *response, FormatPolicyTable(response->body, StdoutWidth()));
}

// DELETEs each id's path in order; one failure does not stop the rest, and makes the status 1.
// `session_ids` says whether the ids name sessions (for the error messages).
int DeleteEach(const Context& ctx, const std::vector<std::string>& ids,
               std::string (*path_of)(const std::string&), std::string_view done_verb,
               bool session_ids) {
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  int status = 0;
  for (const std::string& id : ids) {
    const std::optional<HttpResponse> response =
        Call(client, ctx, "DELETE", path_of(id), {}, session_ids ? id : std::string_view());
    if (!response) {
      status = 1;
      continue;
    }
    if (ctx.json) {
      PrintJson(response->body);
    } else {
      Print(std::string(done_verb) + " " + id + "\n");
    }
  }
  return status;
}

int RunKill(const Context& ctx, const KillCommand& cmd) {
  return DeleteEach(
      ctx, cmd.ids, [](const std::string& id) { return SessionPath(id); }, "killed", true);
}

int RunSend(const Context& ctx, const SendCommand& cmd) {
  std::string text = cmd.text;
  if (cmd.from_stdin) {
    Result<std::string> input = ReadAllStdin();
    if (!input) return Fail(input.error().ToString());
    text = std::move(*input);
  }
  if (cmd.newline) text += '\n';
  const Result<std::string> body = InputBody(text);
  if (!body) {
    return Fail(body.error().what +
                "; this route carries text only (`run --stdin` and `attach` send raw bytes)");
  }
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  const std::optional<HttpResponse> response =
      Call(client, ctx, "POST", SessionPath(cmd.id, "/input"), *body, cmd.id);
  if (!response) return 1;
  if (ctx.json) PrintJson(response->body);
  return 0;
}

int RunVersion(const Context& ctx, const VersionCommand& cmd) {
  const std::string client_line = std::string("monkeyproof ") + kVersion + "\n";
  if (cmd.client_only) {
    if (ctx.json) {
      PrintJson(std::string(R"({"client":")") + kVersion + "\"}");
    } else {
      Print(client_line);
    }
    return 0;
  }
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  const std::optional<HttpResponse> response = Call(client, ctx, "GET", "/version");
  if (ctx.json) {
    PrintJson(std::string(R"({"client":")") + kVersion + R"(","server":)" +
              (response ? response->body : std::string("null")) + "}");
    return response ? 0 : 1;
  }
  Print(client_line);
  if (!response) return 1;
  std::string server = "server: " + JsonStringMember(response->body, "name").value_or("?") + " " +
                       JsonStringMember(response->body, "version").value_or("?");
  if (const std::optional<std::string> supervisor =
          JsonStringMember(response->body, "supervisor")) {
    server += ", supervisor " + *supervisor;
  }
  if (const std::optional<int64_t> protocol = JsonIntegerMember(response->body, "protocol")) {
    server += ", protocol " + std::to_string(*protocol);
  }
  Print(Sanitize(server, false) + " (" + ctx.config.url.ToString() + ")\n");
  return 0;
}

int RunToken(const Context& ctx, const TokenCommand& cmd) {
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  switch (cmd.action) {
    case TokenCommand::Action::kCreate: {
      const std::optional<HttpResponse> response =
          Call(client, ctx, "POST", "/tokens", MintBody(cmd));
      if (!response) return 1;
      if (ctx.json) {
        PrintJson(response->body);
        return 0;
      }
      const std::optional<std::string> token = JsonStringMember(response->body, "token");
      if (!token) return Fail("the server's answer to POST /tokens has no token");
      const Result<std::string> about = FormatMinted(response->body);
      if (about) (void)WriteAll(STDERR_FILENO, *about);
      Print(*token + "\n");
      return 0;
    }
    case TokenCommand::Action::kList: {
      const std::optional<HttpResponse> response = Call(client, ctx, "GET", "/tokens");
      if (!response) return 1;
      if (ctx.json) return PrintFormatted(ctx, *response, std::string());
      return PrintFormatted(ctx, *response, FormatTokenTable(response->body, NowMs()));
    }
    case TokenCommand::Action::kRevoke:
      return DeleteEach(
          ctx, cmd.ids, [](const std::string& id) { return "/tokens/" + UrlEncode(id); }, "revoked",
          false);
  }
  return 1;
}

int RunLogs(const Context& ctx, const LogsCommand& cmd) {
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  uint64_t since = cmd.since;
  std::chrono::milliseconds poll = kPollMin;
  std::set<std::pair<uint64_t, uint64_t>> reported;
  int failures = 0;
  while (true) {
    Result<HttpResponse> response =
        client.Request("GET", SessionPath(cmd.id, "/output") + "?since=" + std::to_string(since));
    if (!response) {
      // Following survives a restart of the API; a one-shot read does not wait for it.
      if (!cmd.follow || ++failures > kMaxRetries) return Fail(response.error().what);
      std::this_thread::sleep_for(std::min(kPollMax * 2, kPollMin * (1 << failures)));
      continue;
    }
    failures = 0;
    if (response->status != 200) {
      return Fail(FormatHttpError(*response, ctx.config.token_source, cmd.id));
    }
    const Result<OutputChunk> chunk = ParseOutputHeaders(*response);
    if (!chunk) return Fail(chunk.error().what);

    // What this answer skipped over: listed gaps, and a start later than asked for.
    std::vector<std::pair<uint64_t, uint64_t>> skipped = chunk->gaps;
    if (chunk->offset > since) skipped.emplace_back(since, chunk->offset);
    for (const std::pair<uint64_t, uint64_t>& range : skipped) {
      const auto [from, to] = range;
      const bool covered = std::any_of(reported.begin(), reported.end(), [&](const auto& r) {
        return r.first <= range.first && range.second <= r.second;
      });
      if (to <= since || from >= chunk->next || from == to || covered) continue;
      reported.emplace(from, to);
      (void)Fail("output bytes " + std::to_string(from) + "-" + std::to_string(to) +
                 " are gone (cut by the transcript cap)");
    }

    if (!response->body.empty()) {
      if (Result<void> written = WriteAll(STDOUT_FILENO, response->body); !written) {
        return Fail(written.error().ToString());
      }
    }
    const bool progressed = chunk->next > since || !response->body.empty();
    since = std::max(since, chunk->next);
    if (since < chunk->total) {
      if (!progressed)
        return Fail("the server returned no output before offset " + std::to_string(chunk->total) +
                    "; stopping at " + std::to_string(since));
      continue;  // more is there already
    }
    if (!cmd.follow || chunk->ended) return 0;
    if (progressed) {
      poll = kPollMin;
    } else {
      std::this_thread::sleep_for(poll);
      poll = std::min(poll * 2, kPollMax);
    }
  }
}

}  // namespace mp::cli
