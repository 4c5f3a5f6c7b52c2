// `run` and `attach`: a session's output over WebSocket, resumed from the last offset after
// every drop, with local stdin (or the terminal's keys) going the other way.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/terminal.h"

namespace mp::cli {
namespace {

constexpr int kMaxReconnects = 10;                      // consecutive failed attempts
constexpr std::chrono::milliseconds kBackoffMin{100};   // doubled per failed attempt
constexpr std::chrono::milliseconds kBackoffMax{3000};  // ... up to this
constexpr uint64_t kAttachReplayBytes = 4096;           // output replayed on attach
constexpr char kDetachKey = 0x1d;                       // Ctrl-]

// Reads stdin on a thread of its own (a blocking read works for every kind of stdin: terminal,
// pipe, file, /dev/null) and hands each chunk to the WebSocket loop with WsClient::Post, one at
// a time: the next read waits until the loop reports the chunk sent, so a slow server slows
// the reader instead of growing a queue. End of input is delivered as an empty chunk.
// Destroy it before the WsClient: after the destructor nothing more is posted (the thread,
// possibly blocked in read(), is left to end with the process).
class StdinPump {
 public:
  // Runs on the loop's thread; call `done` once the chunk is sent (or dropped).
  using Deliver = std::function<void(std::string chunk, std::function<void()> done)>;

  StdinPump(WsClient& ws, Deliver deliver) : state_(std::make_shared<State>()) {
    std::thread([state = state_, ws_ptr = &ws, deliver = std::move(deliver)] {
      Loop(state, ws_ptr, deliver);
    }).detach();
  }
  ~StdinPump() {
    const std::lock_guard<std::mutex> lock(state_->mu);
    state_->cancelled = true;
    state_->cv.notify_all();
  }
  StdinPump(const StdinPump&) = delete;
  StdinPump& operator=(const StdinPump&) = delete;

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool cancelled = false;
    bool sent = false;
  };

  static void Loop(const std::shared_ptr<State>& state, WsClient* ws, const Deliver& deliver) {
    char buf[16384];
    while (true) {
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      std::string chunk = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
      std::unique_lock<std::mutex> lock(state->mu);
      if (state->cancelled) return;
      state->sent = false;
      // Posting under the mutex: once the destructor has run, `ws` is never touched again.
      ws->Post([state, deliver, chunk = std::move(chunk)]() mutable {
        deliver(std::move(chunk), [state] {
          const std::lock_guard<std::mutex> done_lock(state->mu);
          state->sent = true;
          state->cv.notify_all();
        });
      });
      if (n <= 0) return;  // end of input (or a read error, taken as the end)
      state->cv.wait(lock, [&] { return state->sent || state->cancelled; });
      if (state->cancelled) return;
    }
  }

  std::shared_ptr<State> state_;
};

struct StreamOptions {
  uint64_t since = 0;          // first output offset wanted
  bool forward_stdin = false;  // run --stdin: stdin as binary frames, close-stdin at EOF
  bool attach = false;         // keys as binary frames, Ctrl-] detaches, resize on SIGWINCH
};

std::optional<std::pair<int, int>> LocalWindowSize() {
  if (auto size = WindowSize(STDOUT_FILENO)) return size;
  return WindowSize(STDIN_FILENO);
}

std::chrono::milliseconds Backoff(int attempt) {
  std::chrono::milliseconds delay = kBackoffMin;
  for (int i = 1; i < attempt && delay < kBackoffMax; ++i) delay *= 2;
  return std::min(delay, kBackoffMax);
}

int StreamSession(const Context& ctx, const std::string& id, const StreamOptions& opts) {
  WsClient ws(ctx.config.url, ctx.config.token, ctx.config.tls);
  OutputCursor cursor(opts.since);
  std::optional<int> exit_status;
  std::string end_reason;
  std::optional<int64_t> end_signal;
  bool detached = false;
  int interrupted = 0;  // the signal that stopped us
  bool output_failed = false;
  // In raw mode the terminal does not turn "\n" into "\r\n" for us.
  const std::string_view eol = opts.attach ? "\r\n" : "\n";
  const auto note = [&](const std::string& message) {
    (void)WriteAll(STDERR_FILENO, "monkeyproof: " + message + std::string(eol));
  };
  const auto send_size = [&] {
    if (const std::optional<std::pair<int, int>> size = LocalWindowSize()) {
      ws.SendText(WsResizeJson(size->first, size->second));
    }
  };

  ws.HandleSignals({SIGINT, SIGTERM, SIGHUP, SIGQUIT}, [&](int signo) {
    interrupted = signo;
    ws.Stop();
  });
  if (opts.attach) ws.HandleSignals({SIGWINCH}, [&](int) { send_size(); });

  const WsClient::TextHandler on_text = [&](std::string_view text) {
    const Result<ServerMessage> parsed = ParseServerMessage(text);
    if (!parsed) return;  // not ours to understand; the next message may be
    const ServerMessage& msg = *parsed;
    using Kind = ServerMessage::Kind;
    switch (msg.kind) {
      case Kind::kCatchup:
      case Kind::kStdout:
      case Kind::kStderr: {
        const std::string_view data = cursor.Accept(msg);
        if (data.empty() || output_failed) break;
        const int fd = msg.kind == Kind::kStderr ? STDERR_FILENO : STDOUT_FILENO;
        if (Result<void> written = WriteAll(fd, data); !written) {
          output_failed = true;
          note(written.error().ToString());
          ws.Stop();
        }
        break;
      }
      case Kind::kGap: {
        const uint64_t before = cursor.next();
        (void)cursor.Accept(msg);
        if (cursor.next() > before) {
          note("output bytes " + std::to_string(std::max(before, msg.from)) + "-" +
               std::to_string(msg.to) + " are gone (cut by the transcript cap)");
        }
        break;
      }
      case Kind::kExit:
        exit_status = ExitStatusFromCode(msg.code);
        end_reason = msg.reason;
        end_signal = msg.signal;
        ws.Stop();
        break;
      case Kind::kError:
        note("the server refused a message: " + Sanitize(msg.error, false) +
             (msg.error_code.empty() ? "" : " (" + Sanitize(msg.error_code, false) + ")"));
        break;
      default:  // killed (an exit follows), lagged (the server resends), anything newer
        break;
    }
  };

  std::optional<StdinPump> pump;
  if (opts.forward_stdin) {
    pump.emplace(ws, [&](std::string chunk, std::function<void()> done) {
      if (chunk.empty()) {
        ws.SendText(WsCloseStdinJson(), std::move(done));
      } else {
        ws.SendBinary(std::move(chunk), std::move(done));
      }
    });
  } else if (opts.attach) {
    pump.emplace(ws, [&](std::string chunk, std::function<void()> done) {
      const size_t key = chunk.find(kDetachKey);
      if (key == std::string::npos) {
        if (chunk.empty()) {
          done();  // end of input: keep watching
        } else {
          ws.SendBinary(std::move(chunk), std::move(done));
        }
        return;
      }
      if (key > 0) ws.SendBinary(chunk.substr(0, key));
      detached = true;
      ws.Stop();
      done();
    });
  }

  int attempts = 0;  // consecutive failures
  bool announced = false;
  while (!exit_status && !detached && interrupted == 0 && !output_failed) {
    const uint64_t resume_at = cursor.next();
    Result<HttpResponse> connected =
        ws.Connect(SessionPath(id, "/ws") + "?since=" + std::to_string(resume_at));
    if (exit_status || detached || interrupted != 0) break;
    std::string problem;
    if (connected && connected->status == 101) {
      if (opts.attach) send_size();
      if (announced) note("reconnected; resuming at byte " + std::to_string(resume_at));
      announced = false;
      Result<void> ran = ws.Run(on_text);
      if (exit_status || detached || interrupted != 0 || output_failed) break;
      if (cursor.next() > resume_at) attempts = 0;  // the connection did carry output
      problem = ran ? "the server closed the connection" : ran.error().what;
    } else if (connected) {
      const int status = connected->status;
      if (status != 429 && status != 502 && status != 503 && status != 504) {
        return Fail(FormatHttpError(*connected, ctx.config.token_source, id));
      }
      problem = FormatHttpError(*connected, ctx.config.token_source);
    } else {
      problem = connected.error().what;
    }
    if (++attempts > kMaxReconnects) {
      note("giving up on session " + id + " after " + std::to_string(kMaxReconnects) +
           " attempts: " + problem);
      return 1;
    }
    if (!announced) {
      note(problem + "; reconnecting");
      announced = true;
    }
    ws.Wait(Backoff(attempts));
  }
  pump.reset();

  if (exit_status) {
    if (!end_reason.empty() && end_reason != "exit") {
      note("session " + id + " ended: " + Sanitize(end_reason, false) +
           (end_signal ? ", signal " + std::to_string(*end_signal) : ""));
    }
    return *exit_status;
  }
  if (detached) {
    note("detached from " + id + "; it keeps running (monkeyproof attach " + id + ")");
    return 0;
  }
  if (interrupted != 0) {
    note("stopped watching; session " + id + " keeps running (monkeyproof kill " + id +
         " ends it)");
    return 128 + interrupted;
  }
  return 1;  // output_failed, reported already
}

}  // namespace

int RunRun(const Context& ctx, const RunCommand& cmd) {
  std::optional<std::pair<int, int>> pty;
  if (cmd.type == "interactive") pty = LocalWindowSize();
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  const std::optional<HttpResponse> response =
      Call(client, ctx, "POST", "/sessions", SpawnBody(cmd, pty));
  if (!response) return 1;
  const std::optional<std::string> id = JsonStringMember(response->body, "id");
  if (!id || id->empty()) return Fail("the server's answer names no session id");
  if (cmd.detach) {
    if (ctx.json) {
      PrintJson(response->body);
    } else {
      (void)WriteAll(STDOUT_FILENO, *id + "\n");
    }
    return 0;
  }
  std::string started = "monkeyproof: session " + *id + " started";
  if (cmd.type == "interactive") started += " (type into it with: monkeyproof attach " + *id + ")";
  (void)WriteAll(STDERR_FILENO, started + "\n");
  StreamOptions opts;
  opts.forward_stdin = cmd.forward_stdin;
  return StreamSession(ctx, *id, opts);
}

int RunAttach(const Context& ctx, const AttachCommand& cmd) {
  HttpClient client(ctx.config.url, ctx.config.token, ctx.config.tls);
  const std::optional<HttpResponse> response =
      Call(client, ctx, "GET", SessionPath(cmd.id), {}, cmd.id);
  if (!response) return 1;
  const std::string type = JsonStringMember(response->body, "type").value_or("?");
  const std::string status = JsonStringMember(response->body, "status").value_or("?");
  if (type != "interactive") {
    return Fail("session " + cmd.id + " is of type " + Sanitize(type, false) +
                "; attach needs an interactive one (follow it with: monkeyproof logs -f " + cmd.id +
                ")");
  }
  if (status != "running") {
    return Fail("session " + cmd.id + " is not running (" + Sanitize(status, false) +
                "; see monkeyproof show " + cmd.id + ")");
  }
  const uint64_t output_bytes = static_cast<uint64_t>(
      std::max<int64_t>(0, JsonIntegerMember(response->body, "outputBytes").value_or(0)));
  StreamOptions opts;
  opts.attach = true;
  opts.since = output_bytes > kAttachReplayBytes ? output_bytes - kAttachReplayBytes : 0;

  (void)WriteAll(STDERR_FILENO, "monkeyproof: attached to " + cmd.id +
                                    "; detach with Ctrl-] (Ctrl-L redraws most programs)\n");
  std::unique_ptr<RawTerminal> raw;
  if (IsTerminal(STDIN_FILENO)) {
    Result<std::unique_ptr<RawTerminal>> entered = RawTerminal::Enter(STDIN_FILENO);
    if (!entered) return Fail(entered.error().ToString());
    raw = std::move(*entered);
  }
  const int result = StreamSession(ctx, cmd.id, opts);
  raw.reset();
  return result;
}

}  // namespace mp::cli
