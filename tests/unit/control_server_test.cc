// ControlServer (src/supervisor/control_server.h) over a real AF_UNIX SOCK_SEQPACKET socket in a
// mkdtemp directory. The EventLoop runs on its own thread; the test thread is the client, with
// blocking sockets, and hands work to the loop thread through LoopThread::Call (an eventfd), so
// server calls happen on the loop's thread and nothing synchronises by sleeping. Unprivileged:
// the allowlist is built from our own uid, and chown is skipped when not root.
#include "supervisor/control_server.h"

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
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/messages.h"
#include "common/unique_fd.h"
#include "common/wire.h"
#include "control_server_fixture.h"

namespace mp::supervisor::control_test {
namespace {

TEST_F(ControlServerTest, HandshakeThenRequestReachesHandlerAndResponseComesBack) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  auto hello = client.Hello();
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->proto, wire::kProtoVersion);
  EXPECT_EQ(hello->supervisor, "9.9.9-test");
  EXPECT_EQ(hello->boot_id, "boot-0123-abcd");

  client.SendRequest(wire::Request{42, wire::HealthRequest{}});
  auto response = client.ReceiveResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->id, 42u);
  ASSERT_TRUE(std::holds_alternative<wire::HealthInfo>(response->body));
  EXPECT_EQ(std::get<wire::HealthInfo>(response->body).version, "9.9.9-test");

  const auto seen = handler_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].request.id, 42u);
  EXPECT_EQ(seen[0].request.type(), wire::RequestType::kHealth);
  EXPECT_EQ(seen[0].peer.uid, ::getuid());
  EXPECT_EQ(seen[0].peer.gid, ::getgid());
  EXPECT_EQ(seen[0].peer.pid, ::getpid());
  EXPECT_EQ(seen[0].peer.client, "test-client/1");
  EXPECT_NE(seen[0].peer.connection_id, 0u);
  EXPECT_EQ(ConnectionCount(), 1u);

  client.Close();
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  EXPECT_EQ(handler_.disconnects()[0].connection_id, seen[0].peer.connection_id);
  EXPECT_EQ(handler_.disconnects()[0].client, "test-client/1");
  EXPECT_EQ(ConnectionCount(), 0u);

  // The destructor removes the socket file it bound.
  StopServer();
  struct stat st {};
  EXPECT_NE(::lstat(path_.c_str(), &st), 0);
}

TEST_F(ControlServerTest, LaterResponsesAndEventsFromOutsideCallbacks) {
  handler_.auto_reply = false;
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  ASSERT_TRUE(client.Hello());
  client.SendRequest(wire::Request{5, wire::GetRequest{"s-abc"}});
  ASSERT_TRUE(handler_.WaitForRequests(1));
  const uint64_t id = handler_.requests()[0].peer.connection_id;
  // Answered later, from a loop callback that is not the server's (as a session would).
  const EventSendResult sent = OnLoop([&] {
    server_->Send(id, wire::Response{5, std::monostate{}});
    return server_->SendEvent(id, wire::StateEvent{"s-abc", wire::SessionState::kRunning});
  });
  EXPECT_EQ(sent, EventSendResult::kQueued);
  auto response = client.ReceiveResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->id, 5u);
  EXPECT_TRUE(response->ok());
  auto event = client.ReceiveEvent();
  ASSERT_TRUE(event);
  EXPECT_TRUE(std::holds_alternative<wire::StateEvent>(*event));
  // Unknown connections.
  EXPECT_EQ(OnLoop([&] { return server_->SendEvent(id + 100, wire::StateEvent{"s-abc"}); }),
            EventSendResult::kNoPeer);
  EXPECT_EQ(OnLoop([&] { return server_->OutboxBytes(id + 100); }), 0u);
}

TEST_F(ControlServerTest, SocketFileGetsTheConfiguredModeAndUmaskIsRestored) {
  const mode_t old_umask = ::umask(022);
  ControlServerOptions o = Options();
  o.socket_mode = 0640;
  ASSERT_NO_FATAL_FAILURE(StartServer(o));
  EXPECT_EQ(::umask(022), 022u);  // Start put it back
  ::umask(old_umask);
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  if (::geteuid() == 0) {
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_gid, ::getgid());
  }
}

TEST_F(ControlServerTest, RequestBeforeHelloGetsAnErrorAndTheConnectionIsClosed) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  client.SendJson(R"({"id":3,"type":"health"})");
  auto response = client.ReceiveResponse();
  const wire::ErrorBody* error = ErrorOf(response);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(response->id, 3u);
  EXPECT_EQ(error->code, wire::ErrorCode::kBadRequest);
  EXPECT_NE(error->message.find("hello"), std::string::npos) << error->message;
  client.ExpectClosed();
  EXPECT_TRUE(handler_.requests().empty());
  EXPECT_EQ(ConnectionCount(), 0u);
  EXPECT_TRUE(handler_.disconnects().empty());  // never handshaken: the handler never knew it
}

TEST_F(ControlServerTest, WrongProtocolVersionGetsOurHelloAnErrorAndAClose) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  client.SendHello(wire::kProtoVersion + 1);
  // docs/protocol.md: our own hello first, so the client sees the newest version we speak ...
  auto event = client.ReceiveEvent();
  ASSERT_TRUE(event);
  ASSERT_TRUE(std::holds_alternative<wire::ServerHello>(*event));
  EXPECT_EQ(std::get<wire::ServerHello>(*event).proto, wire::kProtoVersion);
  // ... then the error naming both versions, then the close.
  auto response = client.ReceiveResponse();
  const wire::ErrorBody* error = ErrorOf(response);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, wire::ErrorCode::kBadRequest);
  EXPECT_NE(error->message.find("version " + std::to_string(wire::kProtoVersion + 1) +
                                " is not supported"),
            std::string::npos)
      << error->message;
  EXPECT_NE(error->message.find("versions 1 to " + std::to_string(wire::kProtoVersion)),
            std::string::npos)
      << error->message;
  EXPECT_EQ(error->field, "/proto");
  client.ExpectClosed();
  EXPECT_TRUE(handler_.requests().empty());
}

// Version 3's error code insufficient_storage reaches a version-2 connection as capacity.
TEST_F(ControlServerTest, AnErrorCodeTheConnectionsVersionLacksIsToldAsTheNearestOne) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  handler_.hook = [&](const PeerInfo& peer, const wire::Request& request) {
    server_->Send(peer.connection_id,
                  wire::Response{request.id, wire::ErrorBody{wire::ErrorCode::kInsufficientStorage,
                                                             "insufficient storage", ""}});
  };
  for (const uint32_t proto : {2u, 3u}) {
    Client client(path_);
    ASSERT_TRUE(client.Hello(proto));
    client.SendRequest(wire::Request{7, wire::HealthRequest{}});
    const auto response = client.ReceiveResponse();
    const wire::ErrorBody* error = ErrorOf(response);
    ASSERT_NE(error, nullptr) << proto;
    EXPECT_EQ(error->code,
              proto < 3 ? wire::ErrorCode::kCapacity : wire::ErrorCode::kInsufficientStorage)
        << proto;
    EXPECT_EQ(error->message, "insufficient storage");
  }
}

TEST_F(ControlServerTest, SecondHelloClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  ASSERT_TRUE(client.Hello());
  client.SendHello();
  auto response = client.ReceiveResponse();
  ASSERT_NE(ErrorOf(response), nullptr);
  client.ExpectClosed();
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  EXPECT_TRUE(handler_.requests().empty());
}

TEST_F(ControlServerTest, GarbageRecordClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  ASSERT_TRUE(client.Hello());
  const std::string garbage = "this is not an MPW1 frame at all";
  client.SendRaw(std::vector<uint8_t>(garbage.begin(), garbage.end()));
  client.ExpectClosed();
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  EXPECT_TRUE(handler_.requests().empty());
}

TEST_F(ControlServerTest, RecordLargerThanTheReceiveBufferClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  ASSERT_TRUE(client.Hello());
  // A well-formed header for 70000 bytes: the record is truncated by the 64 KiB buffer.
  const std::string json = R"({"id":1,"type":"health"})";
  std::vector<uint8_t> record = {'M', 'P', 'W', '1'};
  const uint32_t json_len = static_cast<uint32_t>(json.size());
  const uint32_t data_len = 70000 - 12 - json_len;
  for (uint32_t v : {json_len, data_len}) {
    for (int i = 0; i < 4; ++i) record.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  record.insert(record.end(), json.begin(), json.end());
  record.resize(70000, 'x');
  client.SendRaw(record);
  client.ExpectClosed();
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  EXPECT_TRUE(handler_.requests().empty());
}

TEST_F(ControlServerTest, BadRequestWithAnIdGetsBadRequestAndTheConnectionStaysOpen) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  ASSERT_TRUE(client.Hello());

  client.SendJson(R"({"id":9,"type":"get","session":"x-1"})");
  auto response = client.ReceiveResponse();
  const wire::ErrorBody* error = ErrorOf(response);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(response->id, 9u);
  EXPECT_EQ(error->code, wire::ErrorCode::kBadRequest);
  EXPECT_EQ(error->field, "/session");
  EXPECT_NE(error->message.find("session id"), std::string::npos) << error->message;

  client.SendJson(R"({"id":10,"type":"health","bogus":true})");
  response = client.ReceiveResponse();
  error = ErrorOf(response);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(response->id, 10u);
  EXPECT_EQ(error->field, "/bogus");

  client.SendRequest(wire::Request{11, wire::HealthRequest{}});
  response = client.ReceiveResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->id, 11u);
  EXPECT_TRUE(response->ok());
  const auto seen = handler_.requests();
  ASSERT_EQ(seen.size(), 1u);  // only the valid one reached the handler
  EXPECT_EQ(seen[0].request.id, 11u);
  EXPECT_EQ(ConnectionCount(), 1u);
}

TEST_F(ControlServerTest, UnparseableRequestWithoutAnIdClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  ASSERT_TRUE(client.Hello());
  client.SendJson(R"({"id": not json)");
  client.ExpectClosed();
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  EXPECT_TRUE(handler_.requests().empty());
}

TEST_F(ControlServerTest, PeerNotInTheAllowlistIsClosedBeforeAnyByteIsRead) {
  ControlServerOptions o = Options();
  o.allowed_uids = {::getuid() + 1};  // anyone but us (root in CI: uid 1)
  ASSERT_NO_FATAL_FAILURE(StartServer(o));
  // Connect and send while the loop thread is busy running this very task: the hello is in the
  // server-side socket queue before the server can accept the connection.
  std::unique_ptr<Client> client = OnLoop([&] {
    auto c = std::make_unique<Client>(path_);
    c->SendHello();
    return c;
  });
  ASSERT_TRUE(client->connected());
  Got got = client->Receive();
  // ECONNRESET: the kernel reports that the server closed its end with our hello still unread.
  EXPECT_EQ(got.kind, Got::kError);
  EXPECT_EQ(got.err, ECONNRESET) << std::strerror(got.err);
  EXPECT_TRUE(handler_.requests().empty());
  EXPECT_TRUE(handler_.disconnects().empty());
  EXPECT_EQ(ConnectionCount(), 0u);
}

TEST_F(ControlServerTest, MaxConnectionsIsEnforced) {
  ControlServerOptions o = Options();
  o.max_connections = 2;
  ASSERT_NO_FATAL_FAILURE(StartServer(o));
  Client c1(path_);
  ASSERT_TRUE(c1.Hello());
  Client c2(path_);
  ASSERT_TRUE(c2.Hello());
  Client c3(path_);  // the kernel queues it; the server closes it on accept
  c3.ExpectClosed();
  EXPECT_EQ(ConnectionCount(), 2u);

  c1.Close();
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  Client c4(path_);
  EXPECT_TRUE(c4.Hello());
  EXPECT_EQ(ConnectionCount(), 2u);
}

wire::OutputEvent Output(uint64_t offset) {
  return wire::OutputEvent{"s-flood", wire::OutputStream::kStdout, offset,
                           std::vector<uint8_t>(wire::kMaxChunkBytes, 'o')};
}

TEST_F(ControlServerTest, OutputEventsAreDroppedPastTheSoftLimitAndDrainingIsReported) {
  ControlServerOptions o = Options();
  o.outbox_soft_limit_bytes = 128 * 1024;
  o.outbox_hard_limit_bytes = 512 * 1024;
  ASSERT_NO_FATAL_FAILURE(StartServer(o));
  Client client(path_);
  const uint64_t id = Handshake(client);

  // The client reads nothing meanwhile: the socket buffer fills, then the outbox.
  struct Filled {
    int queued = 0;
    EventSendResult last = EventSendResult::kQueued;
    size_t outbox = 0;
    EventSendResult state = EventSendResult::kNoPeer;
    size_t outbox_after_response = 0;
  };
  const Filled f = OnLoop([&] {
    Filled r;
    uint64_t offset = 0;
    for (int i = 0; i < 1000; ++i) {
      r.last = server_->SendEvent(id, Output(offset));
      if (r.last != EventSendResult::kQueued) break;
      ++r.queued;
      offset += wire::kMaxChunkBytes;
    }
    r.outbox = server_->OutboxBytes(id);
    // Not dropped: other events, and responses.
    r.state = server_->SendEvent(id, wire::StateEvent{"s-flood", wire::SessionState::kRunning});
    server_->Send(id, wire::Response{77, std::monostate{}});
    r.outbox_after_response = server_->OutboxBytes(id);
    return r;
  });
  EXPECT_EQ(f.last, EventSendResult::kDropped);
  EXPECT_GE(f.outbox, 128u * 1024);
  EXPECT_LE(f.outbox, 512u * 1024);
  EXPECT_EQ(f.state, EventSendResult::kQueued);
  EXPECT_GT(f.outbox_after_response, f.outbox);
  EXPECT_TRUE(handler_.drained().empty());

  // Now read everything, in order: the outputs, the state event, the response.
  for (int i = 0; i < f.queued; ++i) {
    auto event = client.ReceiveEvent();
    ASSERT_TRUE(event);
    ASSERT_TRUE(std::holds_alternative<wire::OutputEvent>(*event));
    EXPECT_EQ(std::get<wire::OutputEvent>(*event).offset, i * uint64_t{wire::kMaxChunkBytes});
  }
  auto state = client.ReceiveEvent();
  ASSERT_TRUE(state);
  EXPECT_TRUE(std::holds_alternative<wire::StateEvent>(*state));
  auto response = client.ReceiveResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->id, 77u);

  ASSERT_TRUE(handler_.WaitForDrained(1));
  EXPECT_EQ(handler_.drained(), std::vector<uint64_t>{id});
  EXPECT_EQ(OnLoop([&] { return server_->SendEvent(id, Output(0)); }), EventSendResult::kQueued);
  EXPECT_EQ(ConnectionCount(), 1u);
}

TEST_F(ControlServerTest, ResponsesQueueUntilTheHardLimitClosesTheConnection) {
  ControlServerOptions o = Options();
  o.outbox_soft_limit_bytes = 128 * 1024;
  o.outbox_hard_limit_bytes = 512 * 1024;
  ASSERT_NO_FATAL_FAILURE(StartServer(o));
  Client client(path_);
  const uint64_t id = Handshake(client);

  struct Outcome {
    int responses = 0;
    bool every_response_queued = true;
    size_t last_outbox = 0;
    size_t connections = 1;
    EventSendResult after = EventSendResult::kQueued;
  };
  const Outcome out = OnLoop([&] {
    Outcome r;
    for (uint64_t offset = 0; server_->SendEvent(id, Output(offset)) == EventSendResult::kQueued;
         offset += wire::kMaxChunkBytes) {
    }
    wire::OutputRead read;
    read.chunks = {{wire::OutputStream::kStdout, 0, static_cast<uint32_t>(wire::kMaxChunkBytes)}};
    read.next = read.total = wire::kMaxChunkBytes;
    read.data.assign(wire::kMaxChunkBytes, 'r');
    for (int i = 0; i < 100 && server_->connection_count() == 1; ++i) {
      const size_t before = server_->OutboxBytes(id);
      server_->Send(id, wire::Response{1000 + static_cast<uint64_t>(i), read});
      if (server_->connection_count() == 1) {
        r.every_response_queued &= server_->OutboxBytes(id) > before;
        r.last_outbox = server_->OutboxBytes(id);
        ++r.responses;
      }
    }
    r.connections = server_->connection_count();
    r.after = server_->SendEvent(id, wire::StateEvent{"s-flood"});
    return r;
  });
  EXPECT_EQ(out.connections, 0u);
  EXPECT_TRUE(out.every_response_queued);
  EXPECT_GE(out.responses, 3);
  EXPECT_LE(out.last_outbox, 512u * 1024);
  EXPECT_GT(out.last_outbox + wire::kMaxChunkBytes, 512u * 1024 - 1024);
  EXPECT_EQ(out.after, EventSendResult::kNoPeer);

  // The client still gets what the kernel had taken, then EOF.
  int frames = 0;
  for (;;) {
    Got got = client.Receive();
    if (got.kind != Got::kFrame) {
      EXPECT_EQ(got.kind, Got::kEof) << std::strerror(got.err);
      break;
    }
    ++frames;
  }
  EXPECT_GT(frames, 0);
  // Closed from Send outside the server's callbacks: reported from a later loop iteration.
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  EXPECT_EQ(handler_.disconnects()[0].connection_id, id);
}

TEST_F(ControlServerTest, ConnectionClosedInsideOnRequestIsReportedAfterItReturns) {
  ControlServerOptions o = Options();
  o.outbox_soft_limit_bytes = 128 * 1024;
  o.outbox_hard_limit_bytes = 512 * 1024;
  int answers = 0;
  EventSendResult after_close = EventSendResult::kQueued;
  // The client never reads; the handler answers one request with far more than the hard limit.
  handler_.hook = [&](const PeerInfo& peer, const wire::Request& request) {
    wire::OutputRead read;
    read.chunks = {{wire::OutputStream::kStdout, 0, static_cast<uint32_t>(wire::kMaxChunkBytes)}};
    read.next = read.total = wire::kMaxChunkBytes;
    read.data.assign(wire::kMaxChunkBytes, 'r');
    for (int i = 0; i < 100 && server_->connection_count() == 1; ++i, ++answers) {
      server_->Send(peer.connection_id, wire::Response{request.id, read});
    }
    // Closed under our feet: later sends are ignored, and OnDisconnect has not come yet.
    server_->Send(peer.connection_id, wire::Response{request.id, read});
    after_close = server_->SendEvent(peer.connection_id, wire::StateEvent{"s-1"});
  };
  ASSERT_NO_FATAL_FAILURE(StartServer(o));
  Client client(path_);
  ASSERT_TRUE(client.Hello());
  client.SendRequest(wire::Request{1, wire::HealthRequest{}});
  ASSERT_TRUE(handler_.WaitForDisconnects(1));
  EXPECT_FALSE(handler_.disconnect_inside_request());
  EXPECT_GE(OnLoop([&] { return answers; }), 3);
  EXPECT_EQ(OnLoop([&] { return after_close; }), EventSendResult::kNoPeer);
  for (;;) {
    Got got = client.Receive();
    if (got.kind != Got::kFrame) {
      EXPECT_EQ(got.kind, Got::kEof) << std::strerror(got.err);
      break;
    }
  }
}

TEST_F(ControlServerTest, StaleSocketFileIsReplaced) {
  {
    UniqueFd stale(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }  // closed: the file stays behind, as after a crash
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  ASSERT_TRUE(S_ISSOCK(st.st_mode));
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  EXPECT_TRUE(client.Hello());
}

TEST_F(ControlServerTest, RegularFileAtThePathIsNotDeleted) {
  {
    std::ofstream file(path_);
    file << "precious";
  }
  auto server = ControlServer::Start(*loop_, Options(), handler_);
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().errnum, EEXIST);
  EXPECT_NE(server.error().what.find("not a socket"), std::string::npos) << server.error().what;
  std::ifstream file(path_);
  std::stringstream content;
  content << file.rdbuf();
  EXPECT_EQ(content.str(), "precious");
}

TEST_F(ControlServerTest, SymlinkAtThePathIsNeitherFollowedNorDeleted) {
  const std::string target = dir_ + "/target";
  {
    std::ofstream file(target);
    file << "x";
  }
  ASSERT_EQ(::symlink(target.c_str(), path_.c_str()), 0);
  auto server = ControlServer::Start(*loop_, Options(), handler_);
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().errnum, EEXIST);
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(::lstat(target.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(ControlServerTest, StartRefusesBadOptions) {
  // Each refusal names the option at fault.
  const auto refused = [&](const ControlServerOptions& o, const std::string& names) {
    auto server = ControlServer::Start(*loop_, o, handler_);
    if (server) return ::testing::AssertionFailure() << "started with a bad " << names;
    if (server.error().what.find(names) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "the error does not name " << names << ": " << server.error().what;
    }
    return ::testing::AssertionSuccess();
  };
  ControlServerOptions o = Options();
  o.allowed_uids.clear();
  EXPECT_TRUE(refused(o, "allowed_uids"));
  o = Options();
  o.socket_path = dir_ + "/" + std::string(200, 'p');
  EXPECT_TRUE(refused(o, "path must be 1..107 bytes"));
  o = Options();
  o.outbox_soft_limit_bytes = o.outbox_hard_limit_bytes + 1;
  EXPECT_TRUE(refused(o, "outbox limits"));
  o = Options();
  o.max_connections = 0;
  EXPECT_TRUE(refused(o, "max_connections"));
  struct stat st {};
  EXPECT_NE(::lstat(path_.c_str(), &st), 0);  // nothing was bound
}

}  // namespace
}  // namespace mp::supervisor::control_test
