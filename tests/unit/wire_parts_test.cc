// Frames over one record (src/common/wire.h, "Parts"): SplitFrame and FrameAssembler as pure
// functions, every refusal of the assembler, then a 1 MiB spawn request through a real
// SEQPACKET socketpair with a writer thread, decoded as monkeyproofd decodes it.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/messages.h"
#include "common/unique_fd.h"
#include "common/wire.h"

namespace mp::wire {
namespace {

// A well-formed frame of exactly `total` bytes: a JSON string padded with 'a's, no data.
std::vector<uint8_t> FrameOf(size_t total) {
  std::string json = "\"";
  json.append(total - kFrameHeaderBytes - 2, 'a');
  json += "\"";
  auto frame = EncodeFrame(json, {}, kMaxMessageBytes);
  EXPECT_TRUE(frame) << frame.error().ToString();
  return frame ? *frame : std::vector<uint8_t>{};
}

std::vector<uint8_t> Part(uint32_t total, uint32_t offset, size_t n, uint8_t fill = 'a') {
  std::vector<uint8_t> out(kPartMagic.begin(), kPartMagic.end());
  for (uint32_t v : {total, offset}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  out.insert(out.end(), n, fill);
  return out;
}

// Feeds `records` in order; the frame the last one completes (empty when none did).
Result<std::vector<uint8_t>> Join(FrameAssembler& assembler,
                                  const std::vector<std::vector<uint8_t>>& records) {
  std::vector<uint8_t> joined;
  for (const auto& r : records) {
    MP_TRY(std::optional<FrameView> view, assembler.Add(r));
    if (view) {
      joined.assign(reinterpret_cast<const uint8_t*>(view->json.data()) - kFrameHeaderBytes,
                    view->data.data() + view->data.size());
    }
  }
  return joined;
}

TEST(FramePartsTest, FrameThatFitsOneRecordIsNotSplit) {
  const auto frame = FrameOf(kMaxFrameBytes);
  auto records = SplitFrame(frame);
  ASSERT_TRUE(records) << records.error().ToString();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ(records->front(), frame);
}

TEST(FramePartsTest, SplitThenJoinGivesTheFrameBack) {
  for (const size_t total :
       {kMaxFrameBytes + 1, 2 * kMaxFrameBodyBytes, 2 * kMaxFrameBodyBytes + 1, kMaxMessageBytes}) {
    SCOPED_TRACE(total);
    const auto frame = FrameOf(total);
    auto records = SplitFrame(frame);
    ASSERT_TRUE(records) << records.error().ToString();
    EXPECT_EQ(records->size(), (total + kMaxFrameBodyBytes - 1) / kMaxFrameBodyBytes);
    for (const auto& r : *records) {
      EXPECT_LE(r.size(), kMaxFrameBytes);
      EXPECT_TRUE(std::equal(kPartMagic.begin(), kPartMagic.end(), r.begin()));
    }
    FrameAssembler assembler;
    auto joined = Join(assembler, *records);
    ASSERT_TRUE(joined) << joined.error().ToString();
    EXPECT_EQ(*joined, frame);
    EXPECT_FALSE(assembler.pending());
  }
}

TEST(FramePartsTest, SplitRefusesOversizedAndMalformedFrames) {
  std::vector<uint8_t> too_big(kMaxMessageBytes + 1, 'a');
  auto r = SplitFrame(too_big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EMSGSIZE);
  auto frame = FrameOf(kMaxFrameBytes + 100);
  frame[0] = 'X';
  r = SplitFrame(frame);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EPROTO);
  EXPECT_FALSE(EncodeFrame(std::string(kMaxMessageBytes, 'a'), {}, kMaxMessageBytes));
}

TEST(FramePartsTest, WholeFramesPassThroughTheAssembler) {
  FrameAssembler assembler;
  for (int i = 0; i < 3; ++i) {
    const auto frame = FrameOf(100 + i);
    auto view = assembler.Add(frame);
    ASSERT_TRUE(view) << view.error().ToString();
    ASSERT_TRUE(view->has_value());
    EXPECT_EQ((*view)->json.size(), frame.size() - kFrameHeaderBytes);
  }
}

TEST(FramePartsTest, AssemblerRefusesEveryMalformedSequence) {
  const uint32_t total = kMaxFrameBytes + 10;
  const auto whole = FrameOf(total);
  auto records = SplitFrame(whole);
  ASSERT_TRUE(records);
  ASSERT_EQ(records->size(), 2u);
  const auto& first = (*records)[0];
  const auto& second = (*records)[1];
  struct Case {
    const char* what;
    std::vector<std::vector<uint8_t>> records;
  };
  const std::vector<Case> cases = {
      {"part with no bytes", {Part(total, 0, 0)}},
      {"part over one record", {Part(total, 0, kMaxFrameBodyBytes + 1)}},
      {"total that fits one record", {Part(kMaxFrameBytes, 0, 100)}},
      {"total over the message limit", {Part(kMaxMessageBytes + 1, 0, 100)}},
      {"first part not at 0", {Part(total, 5, 100)}},
      {"gap between parts", {first, Part(total, kMaxFrameBodyBytes + 1, 9)}},
      {"parts overlap", {first, Part(total, kMaxFrameBodyBytes - 1, 11)}},
      {"total changes", {first, Part(total + 1, kMaxFrameBodyBytes, 11)}},
      {"part runs past the total", {first, Part(total, kMaxFrameBodyBytes, 23)}},
      {"whole frame between parts", {first, FrameOf(100)}},
      {"joined bytes are not a frame", {Part(total, 0, kMaxFrameBodyBytes), second}},
      {"short header", {{'M', 'P', 'P', '1', 0}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    FrameAssembler assembler;
    auto joined = Join(assembler, c.records);
    ASSERT_FALSE(joined);
    EXPECT_EQ(joined.error().errnum, EPROTO);
    EXPECT_NE(joined.error().what, "");
  }
  // A part that stops early leaves the assembler pending (the connection's EOF ends it).
  FrameAssembler assembler;
  auto partial = Join(assembler, {first});
  ASSERT_TRUE(partial);
  EXPECT_TRUE(partial->empty());
  EXPECT_TRUE(assembler.pending());
}

TEST(FramePartsTest, OneMebibyteSpawnCrossesASocketInParts) {
  int fds[2] = {-1, -1};
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0)
      << std::strerror(errno);
  UniqueFd reader(fds[0]);
  UniqueFd writer(fds[1]);
  SpawnRequest spawn;
  spawn.task.assign(kMaxTaskBytes, 'x');
  for (size_t i = 0; i < spawn.task.size(); i += 61) spawn.task[i] = '\n';
  spawn.client = "test";
  auto frame = EncodeRequest(Request{7, spawn});
  ASSERT_TRUE(frame) << frame.error().ToString();
  auto records = SplitFrame(std::move(*frame));
  ASSERT_TRUE(records);
  ASSERT_GT(records->size(), 16u);
  std::thread t([&] {
    for (const auto& r : *records) {
      auto sent = SendFrame(writer.get(), r);
      ASSERT_TRUE(sent) << sent.error().ToString();
      ASSERT_EQ(*sent, SendStatus::kSent);
    }
  });
  std::vector<uint8_t> buffer(kMaxFrameBytes);
  FrameAssembler assembler;
  std::optional<Request> got;
  for (size_t i = 0; i < records->size(); ++i) {
    auto received = ReceiveFrame(reader.get(), buffer, assembler);
    ASSERT_TRUE(received) << received.error().ToString();
    if (i + 1 < records->size()) {
      EXPECT_EQ(received->status, ReceiveStatus::kPart);
      continue;
    }
    ASSERT_EQ(received->status, ReceiveStatus::kFrame);
    auto request = DecodeRequest(received->frame);
    ASSERT_TRUE(request) << request.error().ToString();
    got = *request;
  }
  t.join();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, 7u);
  EXPECT_EQ(std::get<SpawnRequest>(got->body).task, spawn.task);
  // A malformed part is not sent; the receiver that takes no parts refuses good ones.
  EXPECT_FALSE(SendFrame(writer.get(), Part(100, 0, 10)));
  auto again = SplitFrame(*EncodeRequest(Request{8, spawn}));
  ASSERT_TRUE(again);
  ASSERT_EQ(::send(writer.get(), again->front().data(), again->front().size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(again->front().size()));
  auto refused = ReceiveFrame(reader.get(), buffer);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().errnum, EPROTO);
}

}  // namespace
}  // namespace mp::wire
