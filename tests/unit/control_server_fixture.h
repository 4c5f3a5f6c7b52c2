// Test scaffolding for ControlServer (src/supervisor/control_server.h) over a real AF_UNIX
// SOCK_SEQPACKET socket in a mkdtemp directory: the EventLoop on its own thread (LoopThread),
// a recording RequestHandler, and a blocking client with timeouts playing the API. Unprivileged:
// the allowlist is built from our own uid. Used by control_server_test and
// control_proto_version_test.
#pragma once

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/messages.h"
#include "common/unique_fd.h"
#include "common/wire.h"
#include "supervisor/control_server.h"

namespace mp::supervisor::control_test {

using std::chrono::seconds;

constexpr auto kWait = seconds(10);  // upper bound for anything we wait on; never a sleep

// Runs an EventLoop on a thread. Call(f) runs f on the loop thread and returns its result.
class LoopThread {
 public:
  explicit LoopThread(EventLoop& loop) : loop_(loop) {
    wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    EXPECT_TRUE(wake_.valid());
    auto added = loop_.Add(wake_.get(), EPOLLIN, [this](uint32_t) {
      uint64_t n = 0;
      if (::read(wake_.get(), &n, sizeof n) < 0) n = 0;  // EAGAIN: woken for nothing
      RunPosted();
    });
    EXPECT_TRUE(added) << added.error().ToString();
  }
  ~LoopThread() {
    Join();
    loop_.Remove(wake_.get());
  }

  void Start() {
    thread_ = std::thread([this] {
      auto ran = loop_.Run();
      if (!ran) std::fprintf(stderr, "loop: %s\n", ran.error().ToString().c_str());
    });
  }
  void Join() {
    if (!thread_.joinable()) return;
    Call([this] { loop_.Stop(); });
    thread_.join();
  }

  template <typename F>
  auto Call(F f) -> decltype(f()) {
    using R = decltype(f());
    std::packaged_task<R()> task(std::move(f));
    auto done = task.get_future();
    {
      std::lock_guard lock(mu_);
      posted_.push_back([&task] { task(); });
    }
    const uint64_t one = 1;
    EXPECT_EQ(::write(wake_.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
    if (done.wait_for(kWait) != std::future_status::ready) {
      std::fprintf(stderr, "LoopThread::Call: the loop did not run the task; aborting\n");
      std::abort();  // `task` is referenced by the queue: cannot return safely
    }
    return done.get();
  }

 private:
  void RunPosted() {
    std::deque<std::function<void()>> work;
    {
      std::lock_guard lock(mu_);
      work.swap(posted_);
    }
    for (auto& f : work) f();
  }

  EventLoop& loop_;
  UniqueFd wake_;
  std::thread thread_;
  std::mutex mu_;
  std::deque<std::function<void()>> posted_;
};

// Records what the server reports; answers requests itself unless told not to.
class FakeHandler : public RequestHandler {
 public:
  struct Seen {
    PeerInfo peer;
    wire::Request request;
  };

  void OnRequest(const PeerInfo& peer, const wire::Request& request) override {
    {
      std::lock_guard lock(mu_);
      requests_.push_back({peer, request});
    }
    cv_.notify_all();
    if (hook) {
      in_request_ = true;
      hook(peer, request);
      in_request_ = false;
      return;
    }
    if (!auto_reply) return;
    wire::Response response{request.id, std::monostate{}};
    if (request.type() == wire::RequestType::kHealth) {
      wire::HealthInfo health;
      health.version = "9.9.9-test";
      health.ready = true;
      response.body = health;
    }
    server->Send(peer.connection_id, response);
  }
  void OnDisconnect(const PeerInfo& peer) override {
    {
      std::lock_guard lock(mu_);
      if (in_request_) disconnect_inside_request_ = true;
      disconnects_.push_back(peer);
    }
    cv_.notify_all();
  }
  void OnDrained(uint64_t connection_id) {
    {
      std::lock_guard lock(mu_);
      drained_.push_back(connection_id);
    }
    cv_.notify_all();
  }

  std::vector<Seen> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<PeerInfo> disconnects() {
    std::lock_guard lock(mu_);
    return disconnects_;
  }
  std::vector<uint64_t> drained() {
    std::lock_guard lock(mu_);
    return drained_;
  }
  bool WaitForRequests(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return requests_.size() >= n; });
  }
  bool WaitForDisconnects(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return disconnects_.size() >= n; });
  }
  bool WaitForDrained(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return drained_.size() >= n; });
  }

  bool disconnect_inside_request() {
    std::lock_guard lock(mu_);
    return disconnect_inside_request_;
  }

  // Set before the loop thread starts.
  ControlServer* server = nullptr;
  bool auto_reply = true;
  std::function<void(const PeerInfo&, const wire::Request&)> hook;  // replaces the reply

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Seen> requests_;
  std::vector<PeerInfo> disconnects_;
  std::vector<uint64_t> drained_;
  bool in_request_ = false;  // loop thread only
  bool disconnect_inside_request_ = false;
};

// What one blocking receive on the client saw.
struct Got {
  enum Kind { kFrame, kEof, kError } kind = kError;
  int err = 0;
  std::vector<uint8_t> record;
};

// The API's side, blocking, with timeouts so that a server bug fails instead of hanging.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_.Reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd_.valid()) << std::strerror(errno);
    struct timeval tv {};
    tv.tv_sec = std::chrono::duration_cast<seconds>(kWait).count();
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    EXPECT_TRUE(connected_) << "connect(" << path << "): " << std::strerror(errno);
  }

  void SendRaw(const std::vector<uint8_t>& record) {
    EXPECT_EQ(::send(fd_.get(), record.data(), record.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(record.size()))
        << std::strerror(errno);
  }
  void SendJson(std::string_view json) {
    auto frame = wire::EncodeFrame(json);
    ASSERT_TRUE(frame) << frame.error().ToString();
    SendRaw(*frame);
  }
  void SendRequest(const wire::Request& request) {
    auto frame = wire::EncodeRequest(request);
    ASSERT_TRUE(frame) << frame.error().ToString();
    SendRaw(*frame);
  }
  void SendHello(uint32_t proto = wire::kProtoVersion) {
    SendRequest(wire::Request{0, wire::HelloRequest{proto, "test-client/1"}});
  }

  Got Receive() {
    Got got;
    got.record.resize(wire::kMaxFrameBytes + 1);
    const ssize_t n = ::recv(fd_.get(), got.record.data(), got.record.size(), 0);
    if (n < 0) {
      got.kind = Got::kError;
      got.err = errno;
      got.record.clear();
    } else if (n == 0) {
      got.kind = Got::kEof;
      got.record.clear();
    } else {
      got.kind = Got::kFrame;
      got.record.resize(static_cast<size_t>(n));
    }
    return got;
  }
  std::optional<wire::SupervisorMessage> ReceiveMessage() {
    Got got = Receive();
    EXPECT_EQ(got.kind, Got::kFrame) << "err=" << std::strerror(got.err);
    if (got.kind != Got::kFrame) return std::nullopt;
    auto view = wire::DecodeFrame(got.record);
    EXPECT_TRUE(view) << view.error().ToString();
    if (!view) return std::nullopt;
    auto message = wire::DecodeSupervisorMessage(*view);
    EXPECT_TRUE(message) << message.error().ToString();
    if (!message) return std::nullopt;
    return std::move(*message);
  }
  std::optional<wire::Response> ReceiveResponse() {
    auto message = ReceiveMessage();
    if (!message) return std::nullopt;
    auto* response = std::get_if<wire::Response>(&*message);
    EXPECT_NE(response, nullptr) << "expected a response, got an event";
    if (response == nullptr) return std::nullopt;
    return *response;
  }
  std::optional<wire::Event> ReceiveEvent() {
    auto message = ReceiveMessage();
    if (!message) return std::nullopt;
    auto* event = std::get_if<wire::Event>(&*message);
    EXPECT_NE(event, nullptr) << "expected an event, got a response";
    if (event == nullptr) return std::nullopt;
    return *event;
  }
  std::optional<wire::ServerHello> Hello(uint32_t proto = wire::kProtoVersion) {
    SendHello(proto);
    auto event = ReceiveEvent();
    if (!event) return std::nullopt;
    auto* hello = std::get_if<wire::ServerHello>(&*event);
    EXPECT_NE(hello, nullptr);
    if (hello == nullptr) return std::nullopt;
    return *hello;
  }
  // The server closed on us: EOF, or ECONNRESET when it closed with our bytes unread.
  void ExpectClosed() {
    Got got = Receive();
    EXPECT_TRUE(got.kind == Got::kEof || (got.kind == Got::kError && got.err == ECONNRESET))
        << "kind=" << got.kind << " err=" << std::strerror(got.err)
        << " bytes=" << got.record.size();
  }
  void Close() { fd_.Reset(); }
  bool connected() const { return connected_; }

 private:
  UniqueFd fd_;
  bool connected_ = false;
};

inline const wire::ErrorBody* ErrorOf(const std::optional<wire::Response>& r) {
  return r ? std::get_if<wire::ErrorBody>(&r->body) : nullptr;
}

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mp-control-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    path_ = dir_ + "/control.sock";
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop) << loop.error().ToString();
    loop_ = std::move(*loop);
  }
  void TearDown() override {
    StopServer();
    for (const char* name : {"/control.sock", "/target", "/other"}) {
      (void)::unlink((dir_ + name).c_str());
    }
    EXPECT_EQ(::rmdir(dir_.c_str()), 0) << dir_ << ": " << std::strerror(errno);
  }

  ControlServerOptions Options() {
    ControlServerOptions o;
    o.socket_path = path_;
    o.allowed_uids = {::getuid()};
    o.socket_group = ::getgid();
    o.supervisor_version = "9.9.9-test";
    o.boot_id = "boot-0123-abcd";
    o.on_drained = [this](uint64_t id) { handler_.OnDrained(id); };
    return o;
  }
  void StartServer(ControlServerOptions options) {
    auto server = ControlServer::Start(*loop_, std::move(options), handler_);
    ASSERT_TRUE(server) << server.error().ToString();
    server_ = std::move(*server);
    handler_.server = server_.get();
    thread_ = std::make_unique<LoopThread>(*loop_);
    thread_->Start();
  }
  void StopServer() {
    thread_.reset();  // joins the loop thread
    server_.reset();
  }
  template <typename F>
  auto OnLoop(F f) {
    return thread_->Call(std::move(f));
  }
  size_t ConnectionCount() {
    return OnLoop([this] { return server_->connection_count(); });
  }
  // Handshake plus one request, which tells us the connection id the server gave it.
  uint64_t Handshake(Client& client) {
    EXPECT_TRUE(client.Hello());
    const size_t before = handler_.requests().size();
    client.SendRequest(wire::Request{7000 + before, wire::HealthRequest{}});
    auto response = client.ReceiveResponse();
    EXPECT_TRUE(response && response->ok());
    EXPECT_TRUE(handler_.WaitForRequests(before + 1));
    return handler_.requests().at(before).peer.connection_id;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<EventLoop> loop_;
  FakeHandler handler_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<LoopThread> thread_;
};

}  // namespace mp::supervisor::control_test
