// OutputLog: offsets across streams, reads from every kind of offset, byte-exact reads served
// from the transcript, the cap and its gaps, write errors (injected, and a removed directory),
// Open after close with torn and corrupt files, bounded memory. Runs as any user (root
// included: disk errors are injected, not made with permissions); every test works in its
// own mkdtemp directory under /tmp, removed at the end.
#include "supervisor/output_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace mp::supervisor {

// White-box access: the private fault-injection hook.
class OutputLogTestPeer {
 public:
  static void FailWrites(OutputLog& log, int errnum, int count, bool partial = false) {
    log.FailWritesForTest(errnum, count, partial);
  }
};

namespace {

using wire::OutputChunk;
using wire::OutputRange;
using wire::OutputRead;
using wire::OutputStream;

constexpr uint32_t kMax = static_cast<uint32_t>(wire::kMaxChunkBytes);
constexpr size_t kHeader = 13;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/mp-output-log-test-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// What was appended: one byte and one stream per offset.
struct Model {
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> streams;
  uint64_t size() const { return bytes.size(); }
  void Add(OutputStream s, const uint8_t* p, size_t n) {
    bytes.insert(bytes.end(), p, p + n);
    streams.insert(streams.end(), n, static_cast<uint8_t>(s));
  }
};

std::unique_ptr<OutputLog> MustCreate(const std::string& dir, const OutputLogOptions& o) {
  auto log = OutputLog::Create(dir, o);
  EXPECT_TRUE(log.has_value()) << log.error().ToString();
  return log.has_value() ? std::move(log).value() : nullptr;
}

std::unique_ptr<OutputLog> MustOpen(const std::string& dir, const OutputLogOptions& o) {
  auto log = OutputLog::Open(dir, o);
  EXPECT_TRUE(log.has_value()) << log.error().ToString();
  return log.has_value() ? std::move(log).value() : nullptr;
}

uint64_t MustAppend(OutputLog& log, Model& m, OutputStream s, const std::string& text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  auto r = log.Append(s, p, text.size());
  EXPECT_TRUE(r.has_value()) << r.error().ToString();
  m.Add(s, p, text.size());
  return r.has_value() ? *r : 0;
}

OutputRead MustRead(const OutputLog& log, uint64_t since, uint32_t limit = kMax) {
  auto r = log.Read(since, limit);
  EXPECT_TRUE(r.has_value()) << r.error().ToString();
  return r.has_value() ? std::move(r).value() : OutputRead{};
}

// Structural checks on one answer: chunks and gaps tile [since, next) exactly, in order,
// without overlap; data is the chunks back to back; the caps hold; and, when `m` is given,
// every chunk's bytes and stream match what was appended.
void CheckRead(const OutputRead& r, uint64_t since, uint32_t limit, const Model* m,
               uint64_t total) {
  EXPECT_EQ(r.total, total);
  EXPECT_LE(r.data.size(), limit);
  EXPECT_LE(r.chunks.size(), wire::kMaxReadChunks);
  EXPECT_LE(r.gaps.size(), wire::kMaxReadGaps);
  EXPECT_GE(r.next, since);
  EXPECT_LE(r.next, total);
  uint64_t pos = since;
  size_t ci = 0;
  size_t gi = 0;
  size_t data_at = 0;
  while (ci < r.chunks.size() || gi < r.gaps.size()) {
    const bool chunk_next =
        gi == r.gaps.size() || (ci < r.chunks.size() && r.chunks[ci].offset <= r.gaps[gi].from);
    if (chunk_next) {
      const OutputChunk& c = r.chunks[ci++];
      ASSERT_EQ(c.offset, pos) << "chunk " << ci - 1 << " does not continue at " << pos;
      ASSERT_GT(c.length, 0u);
      ASSERT_LE(data_at + c.length, r.data.size());
      if (m != nullptr) {
        ASSERT_LE(c.offset + c.length, m->size());
        ASSERT_EQ(0, std::memcmp(r.data.data() + data_at, m->bytes.data() + c.offset, c.length))
            << "bytes differ in chunk at " << c.offset;
        for (uint32_t i = 0; i < c.length; ++i) {
          ASSERT_EQ(m->streams[c.offset + i], static_cast<uint8_t>(c.stream))
              << "stream differs at " << c.offset + i;
        }
      }
      data_at += c.length;
      pos += c.length;
    } else {
      const OutputRange& g = r.gaps[gi++];
      ASSERT_EQ(g.from, pos) << "gap " << gi - 1 << " does not continue at " << pos;
      ASSERT_LT(g.from, g.to);
      pos = g.to;
    }
  }
  EXPECT_EQ(data_at, r.data.size());
  EXPECT_EQ(pos, r.next);
}

struct Whole {
  std::vector<OutputRange> gaps;  // merged across reads
  Model held;                     // bytes and streams at held offsets; gaps left as 0
  std::vector<bool> is_held;
};

// Reads [since, total) in pieces of `limit`, checking each answer. Without `keep`, only the
// gaps are collected (total may be huge after damage).
Whole ReadAll(const OutputLog& log, uint64_t since, uint32_t limit, const Model* m,
              bool keep = true) {
  Whole w;
  const uint64_t total = log.total();
  if (keep) {
    w.held.bytes.assign(total, 0);
    w.held.streams.assign(total, 0);
    w.is_held.assign(total, false);
  }
  uint64_t pos = since;
  while (pos < total) {
    OutputRead r = MustRead(log, pos, limit);
    CheckRead(r, pos, limit, m, total);
    if (::testing::Test::HasFatalFailure()) return w;
    EXPECT_GT(r.next, pos) << "no progress at " << pos;
    if (r.next <= pos) return w;
    size_t at = 0;
    for (const OutputChunk& c : keep ? r.chunks : std::vector<OutputChunk>{}) {
      std::copy_n(r.data.data() + at, c.length, w.held.bytes.begin() + c.offset);
      std::fill_n(w.held.streams.begin() + c.offset, c.length, static_cast<uint8_t>(c.stream));
      std::fill_n(w.is_held.begin() + c.offset, c.length, true);
      at += c.length;
    }
    for (const OutputRange& g : r.gaps) {
      if (!w.gaps.empty() && w.gaps.back().to == g.from) {
        w.gaps.back().to = g.to;
      } else {
        w.gaps.push_back(g);
      }
    }
    pos = r.next;
  }
  return w;
}

uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Appends `bytes` pseudo-random bytes in random-size chunks with random streams (runs of a
// few chunks per stream); sizes are mostly small, sometimes up to `max_chunk`.
void Feed(OutputLog& log, Model& m, std::mt19937_64& rng, size_t bytes, size_t max_chunk) {
  static const std::vector<uint8_t> pool = [] {
    std::mt19937_64 seeded(1);
    return RandomBytes(seeded, 1 << 20);
  }();
  auto stream = OutputStream::kStdout;
  size_t done = 0;
  while (done < bytes) {
    if (rng() % 4 == 0) stream = static_cast<OutputStream>(rng() % 3);
    size_t n = rng() % 8 == 0 ? 1 + rng() % max_chunk : 1 + rng() % 512;
    n = std::min(n, bytes - done);
    const size_t at = rng() % (pool.size() - n);
    auto r = log.Append(stream, pool.data() + at, n);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(*r, m.size());
    m.Add(stream, pool.data() + at, n);
    done += n;
  }
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

uint64_t BaseOf(const std::string& name) { return std::stoull(name.substr(4, 16), nullptr, 16); }

uint64_t DiskBytes(const std::string& dir) {
  uint64_t sum = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) sum += e.file_size();
  return sum;
}

void AppendRaw(const std::string& path, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

std::vector<uint8_t> Header(uint64_t offset, uint8_t stream, uint32_t length) {
  std::vector<uint8_t> h(kHeader);
  for (int i = 0; i < 8; ++i) h[i] = static_cast<uint8_t>(offset >> (8 * i));
  h[8] = stream;
  for (int i = 0; i < 4; ++i) h[9 + i] = static_cast<uint8_t>(length >> (8 * i));
  return h;
}

// ---------------------------------------------------------------------------------------

TEST(OutputLogTest, RoundTripAcrossStreams) {
  TempDir t;
  auto log = MustCreate(t.Sub("s"), {});
  ASSERT_NE(log, nullptr);
  Model m;
  EXPECT_EQ(MustAppend(*log, m, OutputStream::kStdout, "hello "), 0u);
  EXPECT_EQ(MustAppend(*log, m, OutputStream::kStderr, "oops\n"), 6u);
  EXPECT_EQ(MustAppend(*log, m, OutputStream::kStdout, "world"), 11u);
  EXPECT_EQ(MustAppend(*log, m, OutputStream::kPty, "$ "), 16u);
  EXPECT_EQ(log->total(), 18u);
  EXPECT_EQ(log->first_held(), 0u);
  const OutputRead r = MustRead(*log, 0);
  EXPECT_EQ(r.chunks, (std::vector<OutputChunk>{{OutputStream::kStdout, 0, 6},
                                                {OutputStream::kStderr, 6, 5},
                                                {OutputStream::kStdout, 11, 5},
                                                {OutputStream::kPty, 16, 2}}));
  EXPECT_EQ(std::string(r.data.begin(), r.data.end()), "hello oops\nworld$ ");
  EXPECT_TRUE(r.gaps.empty());
  EXPECT_EQ(r.next, 18u);
  EXPECT_EQ(r.total, 18u);
  EXPECT_FALSE(r.ended);
  // Empty appends take no offset.
  auto e = log->Append(OutputStream::kStdout, nullptr, 0);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(*e, 18u);
  EXPECT_EQ(log->total(), 18u);
}

TEST(OutputLogTest, AdjacentSameStreamAppendsMergeInReads) {
  TempDir t;
  auto log = MustCreate(t.Sub("s"), {});
  Model m;
  for (int i = 0; i < 100; ++i) MustAppend(*log, m, OutputStream::kStderr, "ab");
  MustAppend(*log, m, OutputStream::kStdout, "c");
  const OutputRead r = MustRead(*log, 0);
  EXPECT_EQ(r.chunks, (std::vector<OutputChunk>{{OutputStream::kStderr, 0, 200},
                                                {OutputStream::kStdout, 200, 1}}));
}

// Every kind of `since`, served from the ring (large ring) and from disk (1-byte ring).
class OffsetKindsTest : public ::testing::TestWithParam<size_t> {};

TEST_P(OffsetKindsTest, ReadsFromEveryKindOfOffset) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = GetParam();
  auto log = MustCreate(t.Sub("s"), o);
  Model m;
  MustAppend(*log, m, OutputStream::kStdout, "0123456789");  // [0, 10)
  MustAppend(*log, m, OutputStream::kStderr, "abcdefghij");  // [10, 20)
  MustAppend(*log, m, OutputStream::kPty, "KLMNOPQRST");     // [20, 30)
  const uint64_t total = log->total();
  for (uint64_t since : {0ull, 4ull, 10ull, 15ull, 20ull, 29ull}) {
    SCOPED_TRACE(since);
    for (uint32_t limit : {1u, 3u, 10u, kMax}) {
      const OutputRead r = MustRead(*log, since, limit);
      CheckRead(r, since, limit, &m, total);
      EXPECT_EQ(r.next, std::min<uint64_t>(total, since + limit));
      EXPECT_TRUE(r.gaps.empty());
      ASSERT_FALSE(r.chunks.empty());
      EXPECT_EQ(r.chunks.front().offset, since);
    }
  }
  // Middle of a chunk, split at the limit.
  OutputRead r = MustRead(*log, 15, 7);
  EXPECT_EQ(r.chunks, (std::vector<OutputChunk>{{OutputStream::kStderr, 15, 5},
                                                {OutputStream::kPty, 20, 2}}));
  EXPECT_EQ(std::string(r.data.begin(), r.data.end()), "fghijKL");
  EXPECT_EQ(r.next, 22u);
  // At total: nothing, next = total.
  r = MustRead(*log, total);
  EXPECT_TRUE(r.chunks.empty());
  EXPECT_TRUE(r.gaps.empty());
  EXPECT_TRUE(r.data.empty());
  EXPECT_EQ(r.next, total);
  EXPECT_EQ(r.total, total);
  // Beyond total: an error naming both numbers.
  auto beyond = log->Read(total + 5, kMax);
  ASSERT_FALSE(beyond.has_value());
  EXPECT_EQ(beyond.error().errnum, ERANGE);
  EXPECT_NE(beyond.error().what.find("35"), std::string::npos) << beyond.error().what;
  EXPECT_NE(beyond.error().what.find("total 30"), std::string::npos) << beyond.error().what;
}

INSTANTIATE_TEST_SUITE_P(RingAndDisk, OffsetKindsTest, ::testing::Values(size_t{1} << 20, 1));

TEST(OutputLogTest, LimitOutsideRangeIsAnError) {
  TempDir t;
  auto log = MustCreate(t.Sub("s"), {});
  Model m;
  MustAppend(*log, m, OutputStream::kStdout, "x");
  for (uint32_t limit : {0u, kMax + 1}) {
    auto r = log->Read(0, limit);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().errnum, EINVAL);
  }
}

TEST(OutputLogTest, ChunkCountIsCappedPerRead) {
  TempDir t;
  OutputLogOptions o;
  for (size_t ring : {size_t{1} << 20, size_t{1}}) {
    SCOPED_TRACE(ring);
    o.ring_bytes = ring;
    auto log = MustCreate(t.Sub("s" + std::to_string(ring)), o);
    Model m;
    for (int i = 0; i < 3000; ++i) {
      MustAppend(*log, m, i % 2 == 0 ? OutputStream::kStdout : OutputStream::kStderr, "z");
    }
    const OutputRead r = MustRead(*log, 0);
    CheckRead(r, 0, kMax, &m, log->total());
    EXPECT_EQ(r.chunks.size(), wire::kMaxReadChunks);
    EXPECT_EQ(r.next, wire::kMaxReadChunks);
    ReadAll(*log, 0, kMax, &m);
  }
}

TEST(OutputLogTest, DiskReadsAreByteExactAfterTheRingMovedOn) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 64 << 10;
  o.transcript_max_bytes = 64ull << 20;
  auto log = MustCreate(t.Sub("s"), o);
  Model m;
  std::mt19937_64 rng(42);
  Feed(*log, m, rng, 4 << 20, 200 << 10);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(log->total(), m.size());
  EXPECT_EQ(log->first_held(), 0u);
  // Whole read in full-size pieces: nothing missing, same hash.
  Whole w = ReadAll(*log, 0, kMax, &m);
  EXPECT_TRUE(w.gaps.empty());
  EXPECT_EQ(Fnv1a(w.held.bytes.data(), w.held.bytes.size()), Fnv1a(m.bytes.data(), m.size()));
  EXPECT_EQ(w.held.streams, m.streams);
  // Random pieces from random offsets.
  for (int i = 0; i < 3000; ++i) {
    const uint64_t since = rng() % (m.size() + 1);
    const uint32_t limit = static_cast<uint32_t>(1 + rng() % kMax);
    const OutputRead r = MustRead(*log, since, limit);
    CheckRead(r, since, limit, &m, m.size());
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_TRUE(r.gaps.empty());
    EXPECT_EQ(r.next, std::min<uint64_t>(m.size(), since + limit))
        << "since " << since << " limit " << limit;
  }
}

TEST(OutputLogTest, CapDeletesTheOldestSegmentAndReadReportsTheExactGap) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 4 << 10;
  o.transcript_max_bytes = 64 << 10;
  o.segments = 4;
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, o);
  Model m;
  std::mt19937_64 rng(7);
  for (int step = 0; step < 300; ++step) {
    Feed(*log, m, rng, 1000, 2000);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_LE(DiskBytes(dir), o.transcript_max_bytes);
  }
  const std::vector<std::string> files = SegmentFiles(dir);
  ASSERT_GE(files.size(), 2u);
  ASSERT_LE(files.size(), 2 * o.segments + 1);
  const uint64_t first = log->first_held();
  EXPECT_EQ(first, BaseOf(files.front()));  // the oldest file starts with a record at its base
  EXPECT_GT(first, 0u);
  // From 0: the exact gap, then every byte from `first` on.
  OutputRead r = MustRead(*log, 0);
  CheckRead(r, 0, kMax, &m, m.size());
  ASSERT_FALSE(r.gaps.empty());
  EXPECT_EQ(r.gaps.front(), (OutputRange{0, first}));
  ASSERT_FALSE(r.chunks.empty());
  EXPECT_EQ(r.chunks.front().offset, first);
  // From inside the gap: the gap clipped to `since`.
  r = MustRead(*log, first / 2, 100);
  EXPECT_EQ(r.gaps, (std::vector<OutputRange>{{first / 2, first}}));
  EXPECT_EQ(r.next, first + 100);
  Whole w = ReadAll(*log, 0, 1000, &m);
  EXPECT_EQ(w.gaps, (std::vector<OutputRange>{{0, first}}));
  EXPECT_TRUE(std::all_of(w.is_held.begin() + static_cast<ptrdiff_t>(first), w.is_held.end(),
                          [](bool b) { return b; }));
}

TEST(OutputLogTest, DeletedSegmentIsNoGapWhileTheRingHoldsIt) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 256 << 10;
  o.transcript_max_bytes = 64 << 10;
  o.segments = 4;
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, o);
  Model m;
  std::mt19937_64 rng(8);
  Feed(*log, m, rng, 200 << 10, 4000);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GT(BaseOf(SegmentFiles(dir).front()), 0u);  // the start is gone from disk
  EXPECT_EQ(log->first_held(), 0u);
  Whole w = ReadAll(*log, 0, kMax, &m);
  EXPECT_TRUE(w.gaps.empty());
}

TEST(OutputLogTest, ReleaseRingFreesTheTailOnlyWhenTheDiskHoldsIt) {
  {
    SCOPED_TRACE("everything on disk");
    TempDir t;
    OutputLogOptions o;
    o.ring_bytes = 1 << 20;
    auto log = MustCreate(t.Sub("s"), o);
    Model m;
    std::mt19937_64 rng(21);
    Feed(*log, m, rng, 3 << 20, 60000);
    ASSERT_FALSE(HasFatalFailure());
    const size_t before = log->memory_bytes();
    ASSERT_GE(before, size_t{1} << 20);
    EXPECT_TRUE(log->ReleaseRing());
    EXPECT_LE(log->memory_bytes() + (size_t{1} << 20), before);
    Whole w = ReadAll(*log, 0, kMax, &m);  // every byte, now from disk
    EXPECT_TRUE(w.gaps.empty());
    EXPECT_EQ(log->first_held(), 0u);
    EXPECT_TRUE(log->ReleaseRing());  // again: nothing left to free
  }
  {
    SCOPED_TRACE("a failed write in the ring's range");
    TempDir t;
    OutputLogOptions o;
    o.ring_bytes = 8 << 10;
    auto log = MustCreate(t.Sub("s"), o);
    Model m;
    MustAppend(*log, m, OutputStream::kStdout, std::string(1000, 'a'));
    OutputLogTestPeer::FailWrites(*log, ENOSPC, 1, false);
    const std::string lost(3000, 'b');
    ASSERT_FALSE(log->Append(OutputStream::kStdout, reinterpret_cast<const uint8_t*>(lost.data()),
                             lost.size()));
    m.Add(OutputStream::kStdout, reinterpret_cast<const uint8_t*>(lost.data()), lost.size());
    EXPECT_FALSE(log->ReleaseRing());
    Whole w = ReadAll(*log, 0, kMax, &m);
    EXPECT_TRUE(w.gaps.empty());
  }
  {
    SCOPED_TRACE("a ring larger than the transcript cap");
    TempDir t;
    OutputLogOptions o;
    o.ring_bytes = 256 << 10;
    o.transcript_max_bytes = 64 << 10;
    o.segments = 4;
    auto log = MustCreate(t.Sub("s"), o);
    Model m;
    std::mt19937_64 rng(22);
    Feed(*log, m, rng, 200 << 10, 4000);
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_FALSE(log->ReleaseRing());
    Whole w = ReadAll(*log, 0, kMax, &m);
    EXPECT_TRUE(w.gaps.empty());
  }
}

TEST(OutputLogTest, WriteErrorKeepsBytesInTheRingThenReadsReportTheExactGap) {
  for (bool partial : {false, true}) {
    SCOPED_TRACE(partial ? "partial write" : "failed write");
    TempDir t;
    OutputLogOptions o;
    o.ring_bytes = 8 << 10;
    const std::string dir = t.Sub("s");
    auto log = MustCreate(dir, o);
    Model m;
    MustAppend(*log, m, OutputStream::kStdout, std::string(1000, 'a'));
    OutputLogTestPeer::FailWrites(*log, ENOSPC, 1, partial);
    const std::string lost(3000, 'b');
    auto r = log->Append(OutputStream::kStderr, reinterpret_cast<const uint8_t*>(lost.data()),
                         lost.size());
    m.Add(OutputStream::kStderr, reinterpret_cast<const uint8_t*>(lost.data()), lost.size());
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().errnum, ENOSPC);
    EXPECT_NE(r.error().what.find("[1000, 4000)"), std::string::npos) << r.error().what;
    EXPECT_EQ(log->total(), 4000u);
    // Still served, from the ring.
    Whole w = ReadAll(*log, 0, kMax, &m);
    EXPECT_TRUE(w.gaps.empty());
    // The disk holds only whole records: a partial write was rolled back.
    EXPECT_EQ(DiskBytes(dir), kHeader + 1000);
    // Later output goes to disk again; once the ring has moved on, the range is a gap.
    std::mt19937_64 rng(9);
    Feed(*log, m, rng, 64 << 10, 1000);
    ASSERT_FALSE(HasFatalFailure());
    w = ReadAll(*log, 0, 777, &m);
    EXPECT_EQ(w.gaps, (std::vector<OutputRange>{{1000, 4000}}));
    OutputRead one = MustRead(*log, 2500, 10);
    EXPECT_EQ(one.gaps, (std::vector<OutputRange>{{2500, 4000}}));
    EXPECT_EQ(one.chunks.front().offset, 4000u);
    // After a restart the same gap comes from the files alone.
    log.reset();
    log = MustOpen(dir, o);
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->total(), m.size());
    EXPECT_TRUE(log->recovery_notes().empty());
    w = ReadAll(*log, 0, kMax, &m);
    EXPECT_EQ(w.gaps, (std::vector<OutputRange>{{1000, 4000}}));
  }
}

TEST(OutputLogTest, UnwrittenRangeIsAGapOnlyWhereTheRingNoLongerHoldsIt) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 4096;
  auto log = MustCreate(t.Sub("s"), o);
  Model m;
  MustAppend(*log, m, OutputStream::kStdout, std::string(1000, 'a'));  // [0, 1000) on disk
  OutputLogTestPeer::FailWrites(*log, ENOSPC, 1);
  const std::string lost(3000, 'b');  // [1000, 4000): ring only
  EXPECT_FALSE(
      log->Append(OutputStream::kStderr, reinterpret_cast<const uint8_t*>(lost.data()), lost.size())
          .has_value());
  m.Add(OutputStream::kStderr, reinterpret_cast<const uint8_t*>(lost.data()), lost.size());
  MustAppend(*log, m, OutputStream::kPty, std::string(2000, 'c'));  // ring is now [1904, 6000)
  EXPECT_EQ(log->first_held(), 0u);
  const OutputRead r = MustRead(*log, 0);
  CheckRead(r, 0, kMax, &m, 6000);
  EXPECT_EQ(r.gaps, (std::vector<OutputRange>{{1000, 1904}}));
  EXPECT_EQ(r.chunks, (std::vector<OutputChunk>{{OutputStream::kStdout, 0, 1000},
                                                {OutputStream::kStderr, 1904, 2096},
                                                {OutputStream::kPty, 4000, 2000}}));
  EXPECT_EQ(r.next, 6000u);
}

TEST(OutputLogTest, RotationIntoARemovedDirectoryFailsButTheRingServes) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 16 << 10;
  o.transcript_max_bytes = 32 << 10;
  o.segments = 4;  // 8 KiB segments: rotation comes quickly
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, o);
  Model m;
  MustAppend(*log, m, OutputStream::kStdout, std::string(2000, 'a'));
  std::filesystem::remove_all(dir);
  int errors = 0;
  uint64_t first_error = 0;
  for (int i = 0; i < 12; ++i) {
    const std::string text(1000, static_cast<char>('c' + i));
    auto r = log->Append(OutputStream::kStderr, reinterpret_cast<const uint8_t*>(text.data()),
                         text.size());
    m.Add(OutputStream::kStderr, reinterpret_cast<const uint8_t*>(text.data()), text.size());
    if (!r.has_value()) {
      if (errors++ == 0) first_error = m.size() - text.size();
      EXPECT_EQ(r.error().errnum, ENOENT) << r.error().ToString();
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_EQ(log->total(), 14000u);
  Whole w = ReadAll(*log, 0, kMax, &m);
  EXPECT_TRUE(w.gaps.empty());  // 14000 bytes fit the 16 KiB ring
  // More output evicts the ring: what is no longer held anywhere is a gap, reported.
  const std::string more(1000, 'm');
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(log->Append(OutputStream::kStdout, reinterpret_cast<const uint8_t*>(more.data()),
                             more.size())
                     .has_value());
    m.Add(OutputStream::kStdout, reinterpret_cast<const uint8_t*>(more.data()), more.size());
  }
  const OutputRead r = MustRead(*log, 0);
  CheckRead(r, 0, kMax, &m, m.size());
  ASSERT_FALSE(r.gaps.empty());
  EXPECT_EQ(r.gaps.front().from, 0u);
  EXPECT_EQ(r.gaps.front().to, log->first_held());
  EXPECT_GT(log->first_held(), first_error);
}

TEST(OutputLogTest, OpenAfterCloseRebuildsTotalAndGapsAndReadsByteExact) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 64 << 10;
  o.transcript_max_bytes = 1 << 20;
  o.segments = 8;
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, o);
  Model m;
  std::mt19937_64 rng(11);
  Feed(*log, m, rng, 1400 << 10, 30000);
  ASSERT_FALSE(HasFatalFailure());
  // One failed write in the middle of what is still on disk.
  OutputLogTestPeer::FailWrites(*log, EIO, 1);
  const uint64_t hole_from = log->total();
  const std::string lost(5000, 'L');
  EXPECT_FALSE(
      log->Append(OutputStream::kPty, reinterpret_cast<const uint8_t*>(lost.data()), lost.size())
          .has_value());
  m.Add(OutputStream::kPty, reinterpret_cast<const uint8_t*>(lost.data()), lost.size());
  Feed(*log, m, rng, 200 << 10, 30000);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(log->Sync().has_value());
  const uint64_t first = BaseOf(SegmentFiles(dir).front());
  ASSERT_GT(first, 0u);
  const uint64_t total = log->total();
  log.reset();

  log = MustOpen(dir, o);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->total(), total);
  EXPECT_EQ(log->first_held(), first);
  EXPECT_TRUE(log->recovery_notes().empty());
  EXPECT_LE(log->memory_bytes(), 16u << 10);  // the ring starts empty
  const std::vector<OutputRange> expected{{0, first}, {hole_from, hole_from + lost.size()}};
  Whole w = ReadAll(*log, 0, kMax, &m);
  EXPECT_EQ(w.gaps, expected);
  for (uint64_t i = first; i < total; ++i) {
    if (i >= hole_from && i < hole_from + lost.size()) continue;
    ASSERT_TRUE(w.is_held[i]) << i;
  }
  for (int i = 0; i < 500; ++i) {
    const uint64_t since = rng() % (total + 1);
    const uint32_t limit = static_cast<uint32_t>(1 + rng() % kMax);
    CheckRead(MustRead(*log, since, limit), since, limit, &m, total);
    ASSERT_FALSE(HasFatalFailure());
  }
  // Appending after Open continues the sequence and the cap.
  Feed(*log, m, rng, 600 << 10, 30000);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_LE(DiskBytes(dir), o.transcript_max_bytes);
  ReadAll(*log, 0, kMax, &m);
}

TEST(OutputLogTest, TornRecordAtTheEndIsTruncatedAndItsRangeIsAGap) {
  TempDir t;
  const std::string dir = t.Sub("s");
  OutputLogOptions o;
  auto log = MustCreate(dir, o);
  Model m;
  MustAppend(*log, m, OutputStream::kStdout, "first ");
  MustAppend(*log, m, OutputStream::kStderr, "second");
  log.reset();
  const std::string seg = dir + "/" + SegmentFiles(dir).back();
  const uint64_t size_before = std::filesystem::file_size(seg);
  std::vector<uint8_t> torn = Header(12, 1, 100);
  torn.insert(torn.end(), 40, 'T');  // 40 of 100 bytes made it
  AppendRaw(seg, torn);

  log = MustOpen(dir, o);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->total(), 112u);
  ASSERT_EQ(log->recovery_notes().size(), 1u);
  EXPECT_NE(log->recovery_notes()[0].find("torn record at byte " + std::to_string(size_before)),
            std::string::npos)
      << log->recovery_notes()[0];
  EXPECT_NE(log->recovery_notes()[0].find("[12, 112)"), std::string::npos);
  EXPECT_EQ(std::filesystem::file_size(seg), size_before);
  OutputRead r = MustRead(*log, 0);
  EXPECT_EQ(std::string(r.data.begin(), r.data.end()), "first second");
  EXPECT_EQ(r.gaps, (std::vector<OutputRange>{{12, 112}}));
  EXPECT_EQ(r.next, 112u);
  // Appends continue after the gap; a second Open sees a clean file.
  const std::string placeholder(100, '?');  // the model's stand-in for the gap
  m.Add(OutputStream::kStdout, reinterpret_cast<const uint8_t*>(placeholder.data()), 100);
  EXPECT_EQ(MustAppend(*log, m, OutputStream::kPty, "third"), 112u);
  log.reset();
  log = MustOpen(dir, o);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->recovery_notes().empty());
  EXPECT_EQ(log->total(), 117u);
  r = MustRead(*log, 100);
  EXPECT_EQ(r.gaps, (std::vector<OutputRange>{{100, 112}}));
  EXPECT_EQ(std::string(r.data.begin(), r.data.end()), "third");
}

TEST(OutputLogTest, TornHeaderAtTheEndIsTruncated) {
  TempDir t;
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, {});
  Model m;
  MustAppend(*log, m, OutputStream::kStdout, "abc");
  log.reset();
  const std::string seg = dir + "/" + SegmentFiles(dir).back();
  AppendRaw(seg, {3, 0, 0, 0, 0});
  log = MustOpen(dir, {});
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->total(), 3u);
  EXPECT_EQ(log->recovery_notes().size(), 1u);
  EXPECT_EQ(std::filesystem::file_size(seg), kHeader + 3);
  Whole w = ReadAll(*log, 0, kMax, &m);
  EXPECT_TRUE(w.gaps.empty());
}

TEST(OutputLogTest, CorruptSegmentRemainderIsAGapUpToTheNextSegment) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 1024;
  o.transcript_max_bytes = 64 << 10;
  o.segments = 4;
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, o);
  Model m;
  for (int i = 0; i < 40; ++i) {
    MustAppend(*log, m, static_cast<OutputStream>(i % 3),
               std::string(1000, static_cast<char>('A' + i)));
  }
  log.reset();
  std::vector<std::string> files = SegmentFiles(dir);
  ASSERT_GE(files.size(), 3u);
  // Break the third record's header (stream byte 9) in the second segment.
  const uint64_t base = BaseOf(files[1]);
  const uint64_t next_base = BaseOf(files[2]);
  {
    const int fd = ::open((dir + "/" + files[1]).c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const uint8_t nine = 9;
    ASSERT_EQ(::pwrite(fd, &nine, 1, 2 * (kHeader + 1000) + 8), 1);
    ::close(fd);
  }
  log = MustOpen(dir, o);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->total(), m.size());
  ASSERT_EQ(log->recovery_notes().size(), 1u);
  EXPECT_NE(log->recovery_notes()[0].find(files[1]), std::string::npos);
  Whole w = ReadAll(*log, 0, 4000, &m);
  EXPECT_EQ(w.gaps, (std::vector<OutputRange>{{base + 2000, next_base}}));
}

TEST(OutputLogTest, GarbageNeverCrashesOpenAndReadsStayConsistent) {
  std::mt19937_64 rng(99);
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE(round);
    TempDir t;
    OutputLogOptions o;
    o.ring_bytes = 1024;
    o.transcript_max_bytes = 32 << 10;
    o.segments = 4;
    const std::string dir = t.Sub("s");
    auto log = MustCreate(dir, o);
    Model m;
    Feed(*log, m, rng, 20000 + rng() % 20000, 3000);
    ASSERT_FALSE(HasFatalFailure());
    const uint64_t total = log->total();
    log.reset();
    const std::vector<std::string> files = SegmentFiles(dir);
    const std::string victim = dir + "/" + files[rng() % files.size()];
    const uint64_t size = std::filesystem::file_size(victim);
    const int fd = ::open(victim.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    switch (rng() % 3) {
      case 0:  // scribble over a random range
        for (int i = 0; i < 8; ++i) {
          const uint8_t b = static_cast<uint8_t>(rng());
          ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(rng() % size)), 1);
        }
        break;
      case 1:  // cut anywhere
        ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(rng() % size)), 0);
        break;
      default: {  // append garbage
        const std::vector<uint8_t> junk = RandomBytes(rng, 1 + rng() % 64);
        ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), static_cast<off_t>(size)),
                  static_cast<ssize_t>(junk.size()));
      }
    }
    ::close(fd);
    log = MustOpen(dir, o);
    ASSERT_NE(log, nullptr);
    EXPECT_GE(log->total(), std::min<uint64_t>(total, BaseOf(files.back())));
    ReadAll(*log, 0, static_cast<uint32_t>(1 + rng() % kMax), nullptr, /*keep=*/false);
    ASSERT_FALSE(HasFatalFailure());
  }
}

TEST(OutputLogTest, MemoryStaysBoundedWhile256MiBFlowThroughA1MiBRing) {
  TempDir t;
  OutputLogOptions o;  // 1 MiB ring, 64 MiB transcript in 8 segments
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, o);
  constexpr size_t kSlack = 64 << 10;  // run table <= ring/512 entries, index, fixed parts
  std::mt19937_64 rng(5);
  const std::vector<uint8_t> pool = RandomBytes(rng, 1 << 20);
  uint64_t done = 0;
  auto stream = OutputStream::kStdout;
  size_t max_memory = 0;
  while (done < (256ull << 20)) {
    if (rng() % 4 == 0) stream = static_cast<OutputStream>(rng() % 3);
    const size_t n = 1 + rng() % (64 << 10);
    const size_t at = rng() % (pool.size() - n);
    ASSERT_TRUE(log->Append(stream, pool.data() + at, n).has_value());
    done += n;
    max_memory = std::max(max_memory, log->memory_bytes());
    ASSERT_LE(log->memory_bytes(), o.ring_bytes + kSlack) << "after " << done;
    if (rng() % 64 == 0) {
      (void)MustRead(*log, rng() % (log->total() + 1), kMax);
      ASSERT_LE(log->memory_bytes(), o.ring_bytes + kSlack);
    }
  }
  EXPECT_LE(DiskBytes(dir), o.transcript_max_bytes);
  // The worst case for metadata: a new stream on every byte.
  for (int i = 0; i < 200000; ++i) {
    ASSERT_TRUE(log->Append(static_cast<OutputStream>(i % 3), pool.data() + i, 1).has_value());
    if (i % 1000 == 0) {
      ASSERT_LE(log->memory_bytes(), o.ring_bytes + kSlack) << i;
    }
  }
  ASSERT_LE(log->memory_bytes(), o.ring_bytes + kSlack);
  const OutputRead r = MustRead(*log, log->total() - 5000, kMax);
  CheckRead(r, log->total() - 5000, kMax, nullptr, log->total());
  EXPECT_TRUE(r.gaps.empty());
  RecordProperty("max_memory_bytes", std::to_string(max_memory));
}

TEST(OutputLogTest, FilesModesAndRecordFormat) {
  TempDir t;
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, {});
  Model m;
  MustAppend(*log, m, OutputStream::kStderr, "hi");
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(SegmentFiles(dir), (std::vector<std::string>{"seg-0000000000000000.log"}));
  const std::string seg = dir + "/seg-0000000000000000.log";
  ASSERT_EQ(::stat(seg.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  MustAppend(*log, m, OutputStream::kPty, "!");
  std::vector<uint8_t> want = Header(0, 1, 2);
  want.insert(want.end(), {'h', 'i'});
  const std::vector<uint8_t> second = Header(2, 2, 1);
  want.insert(want.end(), second.begin(), second.end());
  want.push_back('!');
  std::vector<uint8_t> got(want.size() + 1);
  const int fd = ::open(seg.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  got.resize(static_cast<size_t>(::read(fd, got.data(), got.size())));
  ::close(fd);
  EXPECT_EQ(got, want);
}

TEST(OutputLogTest, CreateRefusesAnExistingTranscriptAndBadOptions) {
  TempDir t;
  const std::string dir = t.Sub("s");
  {
    auto log = MustCreate(dir, {});
    Model m;
    MustAppend(*log, m, OutputStream::kStdout, "x");
  }
  auto again = OutputLog::Create(dir, {});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().errnum, EEXIST);
  // An existing empty directory is fine.
  ASSERT_EQ(::mkdir(t.Sub("empty").c_str(), 0755), 0);
  EXPECT_TRUE(OutputLog::Create(t.Sub("empty"), {}).has_value());
  EXPECT_FALSE(OutputLog::Open(t.Sub("missing"), {}).has_value());
  EXPECT_FALSE(OutputLog::Create(t.Sub("no/parent"), {}).has_value());
  OutputLogOptions bad;
  bad.segments = 0;
  EXPECT_EQ(OutputLog::Create(t.Sub("b1"), bad).error().errnum, EINVAL);
  bad = {};
  bad.transcript_max_bytes = 100;
  EXPECT_EQ(OutputLog::Create(t.Sub("b2"), bad).error().errnum, EINVAL);
  bad = {};
  bad.ring_bytes = 0;
  EXPECT_EQ(OutputLog::Create(t.Sub("b3"), bad).error().errnum, EINVAL);
  // An empty transcript opens with nothing in it.
  auto empty = MustOpen(t.Sub("empty"), {});
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->total(), 0u);
  EXPECT_EQ(MustRead(*empty, 0).next, 0u);
}

TEST(OutputLogTest, SyncAndRemoveFiles) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 1024;
  o.transcript_max_bytes = 16 << 10;
  o.segments = 4;
  const std::string dir = t.Sub("s");
  auto log = MustCreate(dir, o);
  Model m;
  std::mt19937_64 rng(3);
  Feed(*log, m, rng, 12 << 10, 500);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_TRUE(log->Sync().has_value());
  ASSERT_TRUE(log->RemoveFiles().has_value());
  EXPECT_FALSE(std::filesystem::exists(dir));
  // The ring still answers; the rest is a gap; appends report the missing transcript.
  const OutputRead r = MustRead(*log, 0);
  CheckRead(r, 0, kMax, &m, m.size());
  EXPECT_EQ(r.gaps, (std::vector<OutputRange>{{0, m.size() - 1024}}));
  EXPECT_FALSE(log->Append(OutputStream::kStdout, m.bytes.data(), 1).has_value());
  EXPECT_EQ(log->total(), m.size() + 1);
}

TEST(OutputLogTest, GapCountIsCappedPerRead) {
  TempDir t;
  OutputLogOptions o;
  o.ring_bytes = 1;
  auto log = MustCreate(t.Sub("s"), o);
  Model m;
  for (int i = 0; i < 100; ++i) {
    MustAppend(*log, m, OutputStream::kStdout, "kept");
    OutputLogTestPeer::FailWrites(*log, ENOSPC, 1);
    EXPECT_FALSE(log->Append(OutputStream::kStdout, m.bytes.data(), 3).has_value());
    m.Add(OutputStream::kStdout, m.bytes.data(), 3);
  }
  MustAppend(*log, m, OutputStream::kStdout, "end");
  OutputRead r = MustRead(*log, 0);
  EXPECT_EQ(r.gaps.size(), wire::kMaxReadGaps);
  EXPECT_EQ(r.next, 64u * 7 + 4);  // stops before the 65th gap
  const Whole w = ReadAll(*log, 0, kMax, nullptr);
  EXPECT_EQ(w.gaps.size(), 100u);
  EXPECT_EQ(w.gaps.front(), (OutputRange{4, 7}));
}

}  // namespace
}  // namespace mp::supervisor
