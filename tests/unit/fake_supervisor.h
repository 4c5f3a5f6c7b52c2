// A stand-in for monkeyproofd's control socket, for in-process tests of monkeyproof-api
// (tests/unit/http_server_test.cc). It speaks the real protocol (common/wire.h,
// common/messages.h) on a SOCK_SEQPACKET socket in a mkdtemp directory under /tmp and keeps a
// small in-memory model of sessions: no processes, no cgroups, no root.
//
// What a session does is decided by its task text:
//   "emit:<N>[:chunk=<C>][:every=<ms>][:hold]"  N bytes of Pattern() in chunks of C bytes
//       (default 16384), one chunk every <ms> milliseconds (default 1), then exits 0 (with
//       "hold": keeps running until killed or its stdin is closed);
//   "echo"              stdin is appended to the output (stdout); close_stdin exits 0;
//   "fail:<code>[:<field>]"  the spawn is refused with that error code (capacity, not_found,
//       ...) and field (default "/task");
//   "hang"              the spawn is never answered (until the connection goes);
//   "ignoreterm"        runs, prints nothing; a kill request leaves it running (End ends it);
//   anything else       runs, prints nothing, until killed or its stdin is closed.
// Tests add output (Append) and end sessions (End) directly as well.
//
// One thread runs poll() over the listening socket, the connections and a wake-up eventfd.
// The model is guarded by a mutex; every public method is thread-safe. Stop() closes the
// socket and every connection but keeps the sessions, so Start() again looks like a restarted
// supervisor that recovered its records (with a new boot id).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::testing {

class FakeSupervisor {
 public:
  FakeSupervisor();
  ~FakeSupervisor();
  FakeSupervisor(const FakeSupervisor&) = delete;
  FakeSupervisor& operator=(const FakeSupervisor&) = delete;

  // Binds the socket (same path every time) and starts the thread.
  Result<void> Start();
  // Closes the socket and every connection, joins the thread. Sessions stay.
  void Stop();
  [[nodiscard]] const std::string& socket_path() const { return socket_path_; }
  [[nodiscard]] bool running() const;

  // The deterministic output of "emit" sessions: `n` printable ASCII bytes from `offset`.
  static std::string Pattern(uint64_t offset, size_t n);

  // ---- Test control (any thread).
  // Appends one output chunk (one output event per subscriber, never merged with others).
  void Append(const std::string& session, wire::OutputStream stream, const std::string& bytes);
  // Ends a running session: exited with `exit_code`, or killed by `signal` when given.
  void End(const std::string& session, int32_t exit_code, std::optional<int32_t> signal = {});
  // Makes a running session emit like "emit:<n>:chunk=<chunk>" from now on, then exit 0.
  void StartEmit(const std::string& session, uint64_t n, uint64_t chunk);
  // Appends output that subscribers are not sent: each gets `lagged` instead, as when the
  // supervisor drops live output for a slow connection.
  void AppendDropped(const std::string& session, const std::string& bytes);
  // The transcript cap: output before `offset` is no longer held (reads report a gap).
  void DropBefore(const std::string& session, uint64_t offset);
  void SetReady(bool ready);
  // The newest protocol version the fake speaks (it speaks kMinProtoVersion up to it), for
  // new hellos. 1 plays a supervisor from before version 2: a hello offering 2 gets its hello
  // (proto 1), an error and a close, as that supervisor's code does; and on a version-1
  // connection each request's envelope is checked against version 1's members by a table of
  // its own (not common/proto_version.h), a member or audit action of version 2 getting the
  // old decoder's bad_request (the request is then not recorded).
  void SetProto(uint32_t newest);
  void SetMaxSessions(uint32_t max_sessions);
  // Sessions per list response, so that the API has to page.
  void SetListPageSize(size_t n);
  // Replaces the policies the fake lists (sorted by name); answered a page at a time as the
  // supervisor does (wire::PolicyPage).
  void SetPolicies(std::vector<wire::PolicyInfo> policies);

  // ---- Inspection (any thread).
  [[nodiscard]] std::string Output(const std::string& session) const;
  [[nodiscard]] uint64_t OutputBytes(const std::string& session) const;
  [[nodiscard]] std::string StdinOf(const std::string& session) const;
  [[nodiscard]] std::vector<int32_t> SignalsOf(const std::string& session) const;
  [[nodiscard]] std::optional<wire::SessionInfo> Info(const std::string& session) const;
  // Requests handled since construction, all types but hello, and of one type (kHello: the
  // connections greeted, so a reconnect shows).
  [[nodiscard]] uint64_t requests() const;
  [[nodiscard]] uint64_t requests(wire::RequestType type) const;
  // Connections that completed the hello.
  [[nodiscard]] size_t connections() const;
  // The task of the last spawn request received ("" before any).
  [[nodiscard]] std::string last_spawn_task() const;
  // The client (audit identity, "api:<address>") of the last spawn request ("" before any).
  [[nodiscard]] std::string last_spawn_client() const;
  // The cwd_within of the last spawn request received (a scoped token's workspaces).
  [[nodiscard]] std::vector<std::string> last_spawn_cwd_within() const;
  // The principal of the last request of `type` that carries one ("" before any, or when it
  // was absent), and the audit requests received, in order.
  [[nodiscard]] std::string last_principal(wire::RequestType type) const;
  [[nodiscard]] std::vector<wire::AuditRequest> audits() const;
  // The `client` and `via` of the last request of `type` that carries them ("" before any).
  [[nodiscard]] std::string last_client(wire::RequestType type) const;
  [[nodiscard]] std::string last_via(wire::RequestType type) const;
  // The JSON envelope of the last request of `type` as it arrived ("" before any), and the
  // version agreed by the last hello.
  [[nodiscard]] std::string last_envelope(wire::RequestType type) const;
  [[nodiscard]] uint32_t last_proto() const;
  // Hellos refused for their version (the connection was closed after them).
  [[nodiscard]] uint64_t refused_hellos() const;
  // Waits (polling the model) until `pred` holds or `timeout` passes; returns pred's value.
  bool WaitUntil(const std::function<bool(const FakeSupervisor&)>& pred,
                 std::chrono::milliseconds timeout) const;

 private:
  struct Chunk {
    wire::OutputStream stream = wire::OutputStream::kStdout;
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  struct Session {
    wire::SessionInfo info;
    std::string bytes;          // every output byte, bytes[i] at offset i
    std::vector<Chunk> chunks;  // how the output was produced, in offset order
    uint64_t held_from = 0;     // DropBefore
    bool echo = false;
    bool ignore_kill = false;
    uint64_t emit_left = 0;
    uint64_t emit_chunk = 16 * 1024;
    std::chrono::milliseconds emit_every{1};
    std::chrono::steady_clock::time_point next_emit;
    bool emit_hold = false;
    std::string stdin_bytes;
    std::vector<int32_t> signals;
  };
  struct Subscription {
    uint64_t next = 0;
    bool exit_sent = false;
  };
  struct Connection {
    UniqueFd fd;
    bool hello = false;
    uint32_t proto = 0;  // agreed by the hello
    bool broken = false;
    std::deque<std::vector<uint8_t>> outbox;
    size_t outbox_bytes = 0;
    std::map<std::string, Subscription> subs;
    wire::FrameAssembler parts;  // requests over one record arrive in parts, as to monkeyproofd
  };

  void Loop();
  void Wake() const;
  void AcceptAll();
  void ReadFrom(Connection& c);
  void HandleRequest(Connection& c, const wire::Request& request);
  wire::ResponseBody Dispatch(Connection& c, const wire::RequestBody& body);
  void Flush(Connection& c);
  void Send(Connection& c, std::vector<uint8_t> frame);
  void SendEvent(Connection& c, const wire::Event& event);
  [[nodiscard]] bool CanSend(const Connection& c) const;
  void Pump(Connection& c, const std::string& id, Subscription& sub);
  void PumpAll();
  // Runs "emit" sessions; returns whether any is still emitting.
  bool Tick();
  void AppendLocked(Session& s, wire::OutputStream stream, std::string_view bytes);
  void EndLocked(Session& s, wire::EndRecord end);
  wire::OutputRead ReadLocked(const Session& s, uint64_t since, uint64_t limit) const;
  Session* Find(const std::string& id);
  const Session* Find(const std::string& id) const;
  [[nodiscard]] uint32_t ActiveLocked() const;

  std::string dir_;
  std::string socket_path_;
  mutable std::mutex mu_;
  UniqueFd listen_fd_;
  UniqueFd wake_fd_;
  std::thread thread_;
  bool stop_ = false;
  uint64_t boots_ = 0;
  std::string boot_id_;
  std::vector<std::unique_ptr<Connection>> conns_;
  std::map<std::string, std::unique_ptr<Session>> sessions_;
  std::vector<std::string> order_;  // session ids in creation order
  uint64_t next_session_ = 1;
  bool ready_ = true;
  uint32_t newest_proto_ = wire::kProtoVersion;
  uint32_t last_proto_ = 0;
  uint64_t refused_hellos_ = 0;
  std::map<wire::RequestType, std::string> last_envelope_;
  uint32_t max_sessions_ = 64;
  size_t list_page_ = 50;
  std::vector<wire::PolicyInfo> policies_ = DefaultPolicies();
  static std::vector<wire::PolicyInfo> DefaultPolicies();
  uint64_t requests_ = 0;
  std::map<wire::RequestType, uint64_t> requests_by_type_;
  bool no_answer_ = false;  // set by Dispatch: leave this request unanswered
  std::string last_spawn_task_;
  std::string last_spawn_client_;
  std::vector<std::string> last_spawn_cwd_within_;
  std::map<wire::RequestType, std::string> last_principal_;
  std::map<wire::RequestType, std::string> last_client_;
  std::map<wire::RequestType, std::string> last_via_;
  std::vector<wire::AuditRequest> audits_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace mp::testing
