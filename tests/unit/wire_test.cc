// Frame codec (src/common/wire.h): pure encode/decode, then SendFrame/ReceiveFrame over a real
// AF_UNIX SOCK_SEQPACKET socketpair with a writer thread (cf. sandbox2 comms_test.cc).
#include "common/wire.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"

namespace mp::wire {
namespace {

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<uint8_t> RawRecord(std::string_view magic, uint32_t json_len, uint32_t data_len,
                               std::string_view body) {
  std::vector<uint8_t> out(magic.begin(), magic.end());
  for (uint32_t v : {json_len, data_len}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::pair<UniqueFd, UniqueFd> SeqPacketPair(int extra_flags = 0) {
  int fds[2] = {-1, -1};
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | extra_flags, 0, fds), 0)
      << std::strerror(errno);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

TEST(FrameCodecTest, EncodesHeaderLittleEndianThenJsonThenData) {
  const std::vector<uint8_t> data = {0x00, 0xff, 0x10};
  auto frame = EncodeFrame(R"({"a":1})", data);
  ASSERT_TRUE(frame) << frame.error().ToString();
  EXPECT_EQ(*frame,
            RawRecord("MPW1", 7, 3, std::string(R"({"a":1})") + std::string("\0\xff\x10", 3)));
}

TEST(FrameCodecTest, RoundTripsWithoutCopying) {
  const std::vector<uint8_t> data = Bytes("\x01\x02 binary \xfe");
  auto frame = EncodeFrame(R"({"type":"output"})", data);
  ASSERT_TRUE(frame);
  auto view = DecodeFrame(*frame);
  ASSERT_TRUE(view) << view.error().ToString();
  EXPECT_EQ(view->json, R"({"type":"output"})");
  EXPECT_EQ(std::vector<uint8_t>(view->data.begin(), view->data.end()), data);
  // Views point into the record itself.
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(view->json.data()), frame->data() + 12);
  EXPECT_EQ(view->data.data(), frame->data() + 12 + view->json.size());
}

TEST(FrameCodecTest, EmptyDataTailIsFine) {
  auto frame = EncodeFrame("{}");
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->size(), 14u);
  auto view = DecodeFrame(*frame);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->json, "{}");
  EXPECT_TRUE(view->data.empty());
}

TEST(FrameCodecTest, LargestFrameFitsAndOneMoreByteIsRefused) {
  const std::string json(100, ' ');
  const std::vector<uint8_t> data(kMaxFrameBytes - kFrameHeaderBytes - json.size(), 0xab);
  auto frame = EncodeFrame(json, data);
  ASSERT_TRUE(frame) << frame.error().ToString();
  EXPECT_EQ(frame->size(), kMaxFrameBytes);
  EXPECT_TRUE(DecodeFrame(*frame));

  const std::vector<uint8_t> too_much(data.size() + 1, 0xab);
  auto over = EncodeFrame(json, too_much);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().errnum, EMSGSIZE);
  EXPECT_NE(over.error().what.find("65536"), std::string::npos) << over.error().what;
}

TEST(FrameCodecTest, EncodeRefusesEmptyJson) {
  auto frame = EncodeFrame("", Bytes("x"));
  ASSERT_FALSE(frame);
  EXPECT_EQ(frame.error().errnum, EPROTO);
}

struct MalformedCase {
  const char* name;
  std::vector<uint8_t> record;
  const char* why;  // substring of the error
};

TEST(FrameCodecTest, RejectsEveryMalformedClass) {
  std::vector<uint8_t> eleven = RawRecord("MPW1", 0, 0, "");
  eleven.pop_back();
  std::vector<MalformedCase> cases = {
      {"empty", {}, "shorter than the 12-byte header"},
      {"magic only", Bytes("MPW1"), "shorter than the 12-byte header"},
      {"11 bytes", eleven, "shorter than the 12-byte header"},
      {"bad magic", RawRecord("MPW2", 2, 0, "{}"), "bad magic"},
      {"lowercase magic", RawRecord("mpw1", 2, 0, "{}"), "bad magic"},
      {"empty json", RawRecord("MPW1", 0, 2, "ab"), "empty JSON envelope"},
      {"json_len too large", RawRecord("MPW1", 3, 0, "{}"), "does not match"},
      {"json_len too small", RawRecord("MPW1", 1, 0, "{}"), "does not match"},
      {"data_len too large", RawRecord("MPW1", 2, 5, "{}abcd"), "does not match"},
      {"data_len too small", RawRecord("MPW1", 2, 1, "{}abcd"), "does not match"},
      {"trailing byte", RawRecord("MPW1", 2, 0, "{} "), "does not match"},
      {"lengths wrap u32", RawRecord("MPW1", 0xffffffff, 3, "{}"), "does not match"},
      {"both max", RawRecord("MPW1", 0xffffffff, 0xffffffff, "{}"), "does not match"},
      {"oversize record",
       RawRecord("MPW1", 2, kMaxFrameBytes - 12 - 1, "{}" + std::string(kMaxFrameBytes - 13, 'x')),
       "exceeds 65536"},
  };
  for (const MalformedCase& c : cases) {
    auto view = DecodeFrame(c.record);
    ASSERT_FALSE(view) << c.name;
    EXPECT_EQ(view.error().errnum, EPROTO) << c.name;
    EXPECT_NE(view.error().what.find(c.why), std::string::npos)
        << c.name << ": " << view.error().what;
  }
}

TEST(FrameSocketTest, WriterThreadFramesArriveWholeAndInOrder) {
  auto [reader, writer] = SeqPacketPair();
  std::vector<std::vector<uint8_t>> sent;
  for (size_t data_len : {size_t{0}, size_t{1}, size_t{4096}, kMaxFrameBytes - 12 - 20}) {
    const std::string json = R"({"n":)" + std::to_string(sent.size()) + "}";
    std::vector<uint8_t> data(data_len);
    for (size_t i = 0; i < data_len; ++i) data[i] = static_cast<uint8_t>(i * 7 + sent.size());
    auto frame = EncodeFrame(json, data);
    ASSERT_TRUE(frame) << frame.error().ToString();
    sent.push_back(std::move(*frame));
  }
  std::thread thread([&, fd = writer.get()] {
    for (const auto& frame : sent) {
      auto r = SendFrame(fd, frame);
      ASSERT_TRUE(r) << r.error().ToString();
      EXPECT_EQ(*r, SendStatus::kSent);
    }
    // The gather variant writes the same bytes without building the record.
    const std::vector<uint8_t> data = Bytes("tail");
    auto r = SendFrame(fd, R"({"gather":true})", data);
    ASSERT_TRUE(r) << r.error().ToString();
  });
  std::vector<uint8_t> buffer(kMaxFrameBytes);
  for (const auto& want : sent) {
    auto got = ReceiveFrame(reader.get(), buffer);
    ASSERT_TRUE(got) << got.error().ToString();
    ASSERT_EQ(got->status, ReceiveStatus::kFrame);
    auto expect = DecodeFrame(want);
    ASSERT_TRUE(expect);
    EXPECT_EQ(got->frame.json, expect->json);
    EXPECT_TRUE(std::equal(got->frame.data.begin(), got->frame.data.end(), expect->data.begin(),
                           expect->data.end()));
  }
  auto gathered = ReceiveFrame(reader.get(), buffer);
  ASSERT_TRUE(gathered) << gathered.error().ToString();
  EXPECT_EQ(gathered->frame.json, R"({"gather":true})");
  EXPECT_EQ(std::string(gathered->frame.data.begin(), gathered->frame.data.end()), "tail");
  thread.join();

  ASSERT_TRUE(writer.Close());
  auto eof = ReceiveFrame(reader.get(), buffer);
  ASSERT_TRUE(eof) << eof.error().ToString();
  EXPECT_EQ(eof->status, ReceiveStatus::kClosed);
}

TEST(FrameSocketTest, RecordLargerThanBufferIsATruncationError) {
  auto [reader, writer] = SeqPacketPair();
  std::thread thread([fd = writer.get()] {
    const std::vector<uint8_t> big(4096, 'x');
    ASSERT_TRUE(SendFrame(fd, "{}", big));
    ASSERT_TRUE(SendFrame(fd, R"({"after":1})", {}));
  });
  std::vector<uint8_t> small(1024);
  auto got = ReceiveFrame(reader.get(), small);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().errnum, EMSGSIZE);
  // MSG_TRUNC makes recvmsg report the real record length.
  EXPECT_NE(got.error().what.find("record of 4110 bytes"), std::string::npos) << got.error().what;
  // The truncated record was consumed; the next one is intact.
  auto next = ReceiveFrame(reader.get(), small);
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(next->frame.json, R"({"after":1})");
  thread.join();
}

TEST(FrameSocketTest, MalformedRecordFromPeerIsAProtocolError) {
  auto [reader, writer] = SeqPacketPair();
  const std::vector<uint8_t> bad = RawRecord("MPW1", 9, 0, "{}");
  ASSERT_EQ(::send(writer.get(), bad.data(), bad.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bad.size()));
  std::vector<uint8_t> buffer(kMaxFrameBytes);
  auto got = ReceiveFrame(reader.get(), buffer);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().errnum, EPROTO);
}

TEST(FrameSocketTest, PassedFileDescriptorsAreRefused) {
  auto [reader, writer] = SeqPacketPair();
  auto frame = EncodeFrame("{}");
  ASSERT_TRUE(frame);
  int passed = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(passed, 0);
  struct iovec iov = {frame->data(), frame->size()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &passed, sizeof(int));
  ASSERT_EQ(::sendmsg(writer.get(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(frame->size()));
  ::close(passed);

  std::vector<uint8_t> buffer(kMaxFrameBytes);
  auto got = ReceiveFrame(reader.get(), buffer);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().errnum, EPROTO);
  EXPECT_NE(got.error().what.find("ancillary"), std::string::npos) << got.error().what;
}

TEST(FrameSocketTest, FullNonBlockingSocketReportsWouldBlockAndSendsNothing) {
  auto [reader, writer] = SeqPacketPair(SOCK_NONBLOCK);
  const std::vector<uint8_t> data(8192, 'q');
  size_t sent = 0;
  for (;;) {
    auto r = SendFrame(writer.get(), R"({"fill":1})", data);
    ASSERT_TRUE(r) << r.error().ToString();
    if (*r == SendStatus::kWouldBlock) break;
    ++sent;
    ASSERT_LT(sent, 100000u) << "socket never filled up";
  }
  ASSERT_GT(sent, 0u);
  // Still full: an encoded frame also reports kWouldBlock.
  auto frame = EncodeFrame(R"({"last":1})");
  ASSERT_TRUE(frame);
  auto again = SendFrame(writer.get(), *frame);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, SendStatus::kWouldBlock);

  // Drain everything: exactly `sent` whole records, none partial.
  std::vector<uint8_t> buffer(kMaxFrameBytes);
  size_t received = 0;
  for (;;) {
    auto got = ReceiveFrame(reader.get(), buffer);
    ASSERT_TRUE(got) << got.error().ToString();
    if (got->status == ReceiveStatus::kWouldBlock) break;
    ASSERT_EQ(got->status, ReceiveStatus::kFrame);
    EXPECT_EQ(got->frame.json, R"({"fill":1})");
    EXPECT_EQ(got->frame.data.size(), data.size());
    ++received;
  }
  EXPECT_EQ(received, sent);
  auto after = SendFrame(writer.get(), *frame);
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, SendStatus::kSent);
}

TEST(FrameSocketTest, EmptyNonBlockingSocketReportsWouldBlock) {
  auto [reader, writer] = SeqPacketPair(SOCK_NONBLOCK);
  std::vector<uint8_t> buffer(kMaxFrameBytes);
  auto got = ReceiveFrame(reader.get(), buffer);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->status, ReceiveStatus::kWouldBlock);
}

TEST(FrameSocketTest, SendToClosedPeerIsEpipeNotSigpipe) {
  auto [reader, writer] = SeqPacketPair();
  ASSERT_TRUE(reader.Close());
  auto r =
      SendFrame(writer.get(), "{}", {});  // would kill the test with SIGPIPE without MSG_NOSIGNAL
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EPIPE);
}

TEST(FrameSocketTest, SendRefusesAMalformedFrame) {
  auto [reader, writer] = SeqPacketPair();
  auto r = SendFrame(writer.get(), RawRecord("MPW1", 5, 0, "{}"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EPROTO);
}

}  // namespace
}  // namespace mp::wire
