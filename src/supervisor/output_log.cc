// OutputLog (output_log.h): a session's output as one offset sequence, held in a bounded ring
// and in a capped, segmented transcript.
//
// Transcript format. `dir` (0700) holds files `seg-<16 lowercase hex digits>.log` (0600); the
// digits are the offset the segment was created for. Each file is a sequence of records
//   offset u64le | stream u8 (0 stdout, 1 stderr, 2 pty) | length u32le (1..16 MiB) | bytes
// appended with one writev(2) each (O_APPEND). Records are in offset order, within and across
// segments, but need not be contiguous: a range whose write failed is simply absent, so the
// files alone say what is held. A short write is rolled back with ftruncate.
//
// Gaps are not stored; Read derives them. An offset below total() is held when the ring holds
// it or a record on disk covers it; every range that is not is a gap, reported with its exact
// bounds (clipped to the read). Gaps come from deleted segments (the cap), failed writes once
// the ring has moved on, and damage found by Open.
//
// Open. Every header is checked (stream, length 1..16 MiB, offsets increasing and below the
// next segment's base). A record cut short at the end of the last segment (a crash mid-write) is
// truncated away; when its header is whole, its range stays a gap so the offsets are not handed
// out again. An invalid header elsewhere makes the rest of that file a gap: up to the next
// segment exactly, or, in the last segment, up to held end + bytes left (an upper bound, again so
// that no offset is reused). A header whose offset field alone was damaged cannot be told from a
// failed-write hole (the format has no checksum). Each repair is one line in recovery_notes().
//
// Index. Per segment, the (offset, file position) of the first record and then of one record
// every `index_step` bytes of file (64 KiB, or more for caps above 128 MiB so that the whole
// transcript needs at most ~2048 entries). A disk read binary-searches it and scans at most one
// step of headers, through a 64 KiB block buffer that lives only for the call.
#include "supervisor/output_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

namespace mp::supervisor {
namespace {

constexpr size_t kHeaderBytes = 13;                   // offset u64le, stream u8, length u32le
constexpr uint32_t kMaxRecordBytes = 16u << 20;       // also the Open-time plausibility bound
constexpr uint64_t kOffsetLimit = uint64_t{1} << 62;  // runs pack the stream into 2 bits
constexpr uint64_t kNone = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kMinIndexStep = 64 << 10;
constexpr uint64_t kIndexBudget = 2048;         // entries for a whole transcript at its cap
constexpr uint64_t kMaxIndexPerSegment = 1024;  // for oversized segments found by Open
constexpr size_t kReadBlock = 64 << 10;         // >= kMaxChunkBytes + kHeaderBytes
constexpr uint64_t kMinSegmentBytes = 64;
constexpr uint32_t kMaxSegments = 1024;
constexpr size_t kMaxRingBytes = size_t{1} << 30;
constexpr size_t kMaxNotes = 32;
constexpr uint8_t kStreamCount = 3;
static_assert(kReadBlock >= wire::kMaxChunkBytes + kHeaderBytes);

std::string SegmentName(uint64_t base) {
  char name[32];
  std::snprintf(name, sizeof(name), "seg-%016" PRIx64 ".log", base);
  return name;
}

// "seg-" + 16 lowercase hex digits + ".log", nothing else.
bool ParseSegmentName(const char* name, uint64_t* base) {
  if (std::strlen(name) != 24 || std::strncmp(name, "seg-", 4) != 0 ||
      std::strcmp(name + 20, ".log") != 0) {
    return false;
  }
  uint64_t v = 0;
  for (int i = 4; i < 20; ++i) {
    const char c = name[i];
    if (c >= '0' && c <= '9') {
      v = v << 4 | static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = v << 4 | static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return false;
    }
  }
  *base = v;
  return true;
}

struct RecordHeader {
  uint64_t offset = 0;
  uint8_t stream = 0;
  uint32_t length = 0;
};

void EncodeHeader(const RecordHeader& h, uint8_t* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(h.offset >> (8 * i));
  out[8] = h.stream;
  for (int i = 0; i < 4; ++i) out[9 + i] = static_cast<uint8_t>(h.length >> (8 * i));
}

RecordHeader DecodeHeader(const uint8_t* in) {
  RecordHeader h;
  for (int i = 0; i < 8; ++i) h.offset |= uint64_t{in[i]} << (8 * i);
  h.stream = in[8];
  for (int i = 0; i < 4; ++i) h.length |= uint32_t{in[9 + i]} << (8 * i);
  return h;
}

std::string Range(uint64_t from, uint64_t to) {
  return "[" + std::to_string(from) + ", " + std::to_string(to) + ")";
}

// Fixed-capacity circular buffer of trivially copyable T; Grow() moves the content to the
// front of a larger buffer.
template <typename T>
class Circular {
 public:
  size_t size() const { return size_; }
  size_t capacity() const { return buf_.size(); }
  const T& operator[](size_t i) const { return buf_[Index(i)]; }
  void Grow(size_t new_capacity) {
    std::vector<T> next(new_capacity);
    CopyOut(0, size_, next.data());
    buf_.swap(next);
    head_ = 0;
  }
  void PushBack(const T* p, size_t n) {  // n <= capacity() - size()
    const size_t tail = Index(size_);
    const size_t first = std::min(n, buf_.size() - tail);
    std::copy_n(p, first, buf_.data() + tail);
    std::copy_n(p + first, n - first, buf_.data());
    size_ += n;
  }
  void PopFront(size_t n) {  // n <= size()
    head_ = Index(n);
    size_ -= n;
    if (size_ == 0) head_ = 0;
  }
  void CopyOut(size_t i, size_t n, T* out) const {  // i + n <= size()
    const size_t start = Index(i);
    const size_t first = std::min(n, buf_.size() - start);
    std::copy_n(buf_.data() + start, first, out);
    std::copy_n(buf_.data(), n - first, out + first);
  }
  void Clear() { head_ = size_ = 0; }

 private:
  size_t Index(size_t i) const {
    const size_t j = head_ + i;
    return j >= buf_.size() ? j - buf_.size() : j;
  }
  std::vector<T> buf_;
  size_t head_ = 0;
  size_t size_ = 0;
};

// Accumulates one Read's answer: merges adjacent same-stream pieces, enforces the caps.
class ReadBuilder {
 public:
  ReadBuilder(wire::OutputRead& out, size_t limit) : out_(out), limit_(limit) {}
  size_t room() const { return limit_ - out_.data.size(); }
  // Space for `n` bytes at `offset` of `stream`; nullptr when the chunk count is at its cap.
  uint8_t* Add(uint64_t offset, uint8_t stream, size_t n) {
    const auto s = static_cast<wire::OutputStream>(stream);
    if (!out_.chunks.empty() && out_.chunks.back().stream == s &&
        out_.chunks.back().offset + out_.chunks.back().length == offset) {
      out_.chunks.back().length += static_cast<uint32_t>(n);
    } else if (out_.chunks.size() >= wire::kMaxReadChunks) {
      return nullptr;
    } else {
      out_.chunks.push_back({s, offset, static_cast<uint32_t>(n)});
    }
    const size_t at = out_.data.size();
    out_.data.resize(at + n);
    return out_.data.data() + at;
  }
  bool AddGap(uint64_t from, uint64_t to) {
    if (!out_.gaps.empty() && out_.gaps.back().to == from) {
      out_.gaps.back().to = to;
    } else if (out_.gaps.size() >= wire::kMaxReadGaps) {
      return false;
    } else {
      out_.gaps.push_back({from, to});
    }
    return true;
  }

 private:
  wire::OutputRead& out_;
  size_t limit_;
};

// The in-memory tail: bytes [start, end) plus runs {offset, stream} where the stream changes
// (appends of the same stream coalesce). Both buffers grow on demand up to their caps; too many
// runs evict the oldest run's bytes early, so metadata stays <= max_bytes / 64.
class Ring {
 public:
  explicit Ring(size_t max_bytes)
      : max_bytes_(max_bytes), max_runs_(std::max<size_t>(16, max_bytes / 512)) {}

  uint64_t start() const { return start_; }
  uint64_t end() const { return end_; }
  void Reset(uint64_t at) {
    bytes_.Clear();
    runs_.Clear();
    start_ = end_ = at;
  }
  // Reset that also frees the buffers (they grow again on the next Append).
  void Release(uint64_t at) {
    bytes_ = Circular<uint8_t>();
    runs_ = Circular<uint64_t>();
    start_ = end_ = at;
  }
  size_t memory_bytes() const { return bytes_.capacity() + runs_.capacity() * sizeof(uint64_t); }

  void Append(uint64_t offset, uint8_t stream, const uint8_t* p, size_t n) {  // offset == end
    if (n >= max_bytes_) {  // only the last max_bytes_ bytes can stay
      Reset(offset + n - max_bytes_);
      p += n - max_bytes_;
      offset = end_;
      n = max_bytes_;
    }
    if (bytes_.size() + n > bytes_.capacity() && bytes_.capacity() < max_bytes_) {
      bytes_.Grow(
          std::min(max_bytes_, std::max({bytes_.size() + n, bytes_.capacity() * 2, size_t{4096}})));
    }
    if (bytes_.size() + n > bytes_.capacity()) EvictTo(start_ + (bytes_.size() + n - max_bytes_));
    if (bytes_.size() == 0) start_ = offset;
    bytes_.PushBack(p, n);
    end_ = offset + n;
    if (runs_.size() == 0 || Stream(runs_.size() - 1) != stream) {
      if (runs_.size() == runs_.capacity()) {
        if (runs_.capacity() < max_runs_) {
          runs_.Grow(std::min(max_runs_, std::max<size_t>(16, runs_.capacity() * 2)));
        } else {
          EvictTo(Offset(1));  // drops the oldest run with its bytes
        }
      }
      const uint64_t run = offset << 2 | stream;
      runs_.PushBack(&run, 1);
    }
  }

  // Copies from pos (start() <= pos < end) while room and chunk slots last; returns the new pos.
  uint64_t Read(uint64_t pos, ReadBuilder& b) const {
    size_t lo = 0;
    size_t hi = runs_.size();  // first run starting after pos, by binary search
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (Offset(mid) <= pos) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    size_t i = lo - 1;  // runs_[0] starts at or before start_
    while (pos < end_ && b.room() > 0) {
      const uint64_t run_end = i + 1 < runs_.size() ? Offset(i + 1) : end_;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(run_end - pos, b.room()));
      uint8_t* dst = b.Add(pos, Stream(i), n);
      if (dst == nullptr) break;
      bytes_.CopyOut(static_cast<size_t>(pos - start_), n, dst);
      pos += n;
      if (pos == run_end) ++i;
    }
    return pos;
  }

 private:
  uint64_t Offset(size_t i) const { return runs_[i] >> 2; }
  uint8_t Stream(size_t i) const { return static_cast<uint8_t>(runs_[i] & 3); }
  void EvictTo(uint64_t offset) {
    const uint64_t drop = std::min<uint64_t>(offset - start_, bytes_.size());
    bytes_.PopFront(static_cast<size_t>(drop));
    start_ += drop;
    size_t runs_gone = 0;
    while (runs_gone + 1 < runs_.size() && Offset(runs_gone + 1) <= start_) ++runs_gone;
    if (bytes_.size() == 0) runs_gone = runs_.size();
    runs_.PopFront(runs_gone);
  }

  size_t max_bytes_;
  size_t max_runs_;
  Circular<uint8_t> bytes_;
  Circular<uint64_t> runs_;  // offset << 2 | stream
  uint64_t start_ = 0;
  uint64_t end_ = 0;
};

struct IndexEntry {
  uint64_t offset;    // of a record
  uint64_t file_pos;  // of its header
};

struct Segment {
  uint64_t base = 0;         // from the file name
  uint64_t valid_bytes = 0;  // [0, valid_bytes) is well-formed records
  uint64_t file_bytes = 0;   // on-disk size, counted against the cap
  uint64_t first = kNone;    // offset of the first record; kNone when it holds none
  uint64_t end = 0;          // one past the last record's bytes
  uint64_t index_step = kMinIndexStep;
  uint64_t next_index_pos = 0;
  bool appendable = true;  // false once a damaged tail makes appending unsafe
  std::vector<IndexEntry> index;

  void AddRecord(uint64_t offset, uint32_t length) {
    if (first == kNone) first = offset;
    if (valid_bytes >= next_index_pos) {
      index.push_back({offset, valid_bytes});
      next_index_pos = valid_bytes + index_step;
    }
    end = offset + length;
    valid_bytes += kHeaderBytes + length;
  }
};

// pread of exactly n bytes; running into the end of the file is EIO.
Result<void> PreadFull(int fd, uint8_t* p, size_t n, uint64_t pos, const std::string& what) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(pos));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError("pread(" + what + ", at " + std::to_string(pos) + ")");
    if (r == 0) {
      return ErrnoError(EIO, "pread(" + what + "): file ends at byte " + std::to_string(pos));
    }
    p += r;
    n -= static_cast<size_t>(r);
    pos += static_cast<uint64_t>(r);
  }
  return Ok();
}

// Reads a segment through one block buffer. Get(pos, n) needs n <= kReadBlock, pos + n <= end;
// `block` is how much to read ahead on a miss (small when hopping over large records).
class BlockReader {
 public:
  BlockReader(int fd, uint64_t end, std::string what)
      : fd_(fd), end_(end), what_(std::move(what)), buf_(new uint8_t[kReadBlock]) {}
  Result<const uint8_t*> Get(uint64_t pos, size_t n, size_t block = kReadBlock) {
    if (pos < buf_pos_ || pos + n > buf_pos_ + buf_len_) {
      const size_t len =
          static_cast<size_t>(std::min<uint64_t>(std::clamp(block, n, kReadBlock), end_ - pos));
      buf_len_ = 0;
      MP_RETURN_IF_ERROR(PreadFull(fd_, buf_.get(), len, pos, what_));
      buf_pos_ = pos;
      buf_len_ = len;
    }
    return buf_.get() + (pos - buf_pos_);
  }
  // Read-ahead for the header after a record of `length` bytes.
  static size_t HeaderBlock(uint32_t length) { return length > 4096 ? 4096 : kReadBlock; }
  const std::string& what() const { return what_; }

 private:
  int fd_;
  uint64_t end_;
  std::string what_;
  std::unique_ptr<uint8_t[]> buf_;  // uninitialised: only bytes read are looked at
  uint64_t buf_pos_ = 0;
  size_t buf_len_ = 0;
};

// Writes bytes [*written, upto) of the two-part record, resuming after partial writes.
// Returns 0, or the errno that stopped it with *written telling how far it got.
int WriteIov(int fd, const iovec (&iov)[2], uint64_t upto, uint64_t* written) {
  while (*written < upto) {
    iovec rest[2];
    int count = 0;
    uint64_t skip = *written;
    uint64_t want = upto - *written;
    for (const iovec& v : iov) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      const size_t len = static_cast<size_t>(std::min<uint64_t>(v.iov_len - skip, want));
      if (len == 0) break;
      rest[count++] = {static_cast<uint8_t*>(v.iov_base) + skip, len};
      want -= len;
      skip = 0;
    }
    const ssize_t r = ::writev(fd, rest, count);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    *written += static_cast<uint64_t>(r);
  }
  return 0;
}

Result<void> ValidateOptions(const OutputLogOptions& o) {
  if (o.ring_bytes < 1 || o.ring_bytes > kMaxRingBytes) {
    return ErrnoError(EINVAL, "output log: ring_bytes " + std::to_string(o.ring_bytes) +
                                  " is outside 1.." + std::to_string(kMaxRingBytes));
  }
  if (o.segments < 1 || o.segments > kMaxSegments) {
    return ErrnoError(EINVAL, "output log: segments " + std::to_string(o.segments) +
                                  " is outside 1.." + std::to_string(kMaxSegments));
  }
  if (o.transcript_max_bytes / o.segments < kMinSegmentBytes) {
    return ErrnoError(EINVAL, "output log: transcript_max_bytes " +
                                  std::to_string(o.transcript_max_bytes) + " / segments " +
                                  std::to_string(o.segments) + " is below " +
                                  std::to_string(kMinSegmentBytes) + " bytes per segment");
  }
  return Ok();
}

}  // namespace

struct OutputLog::Impl {
  Impl(std::string d, const OutputLogOptions& o)
      : dir(std::move(d)),
        options(o),
        segment_bytes(o.transcript_max_bytes / o.segments),
        max_record(static_cast<uint32_t>(
            std::min<uint64_t>(kMaxRecordBytes, segment_bytes - kHeaderBytes))),
        index_step(std::max(kMinIndexStep, o.transcript_max_bytes / kIndexBudget)),
        ring(o.ring_bytes) {}

  std::string dir;
  OutputLogOptions options;
  uint64_t segment_bytes;
  uint32_t max_record;
  uint64_t index_step;
  UniqueFd dir_fd;
  std::vector<Segment> segments;  // oldest first; offsets increase across them
  UniqueFd write_fd;              // O_RDWR|O_APPEND on segments.back() when valid
  uint64_t disk_bytes = 0;        // sum of file_bytes
  Ring ring;
  uint64_t total = 0;
  uint64_t unwritten_to = 0;  // end of the last range a transcript write failed for
  bool removed = false;
  std::vector<std::string> notes;
  mutable UniqueFd read_fd;  // one cached read-only fd, on the segment read_base
  mutable uint64_t read_base = kNone;
  struct {
    int errnum = 0;
    int count = 0;
    bool partial = false;
  } inject;

  std::string PathOf(uint64_t base) const { return dir + "/" + SegmentName(base); }
  void Note(std::string line) {
    if (notes.size() < kMaxNotes) notes.push_back(std::move(line));
  }
  // `bytes`: the most the segment will hold; the index gets its exact capacity.
  void AddSegment(uint64_t base, uint64_t bytes, uint64_t step) {
    Segment s;
    s.base = base;
    s.index_step = step;
    s.index.reserve(static_cast<size_t>(bytes / step + 2));
    segments.push_back(std::move(s));
  }

  Result<void> ListSegments(std::vector<uint64_t>* bases) const;
  Result<void> DeleteOldest();
  Result<void> PrepareSegment(uint64_t offset, uint64_t record_bytes);
  Result<void> WriteRecord(uint64_t offset, uint8_t stream, const uint8_t* p, uint32_t n);
  Result<void> WriteRecords(uint64_t offset, uint8_t stream, const uint8_t* p, size_t n);
  Result<void> LoadSegment(uint64_t base, uint64_t next_base, bool last);
  Result<int> SegmentFd(const Segment& s) const;
  Result<uint64_t> ReadDisk(uint64_t pos, uint64_t stop, ReadBuilder& b,
                            std::optional<uint64_t>* hole) const;
};

Result<void> OutputLog::Impl::ListSegments(std::vector<uint64_t>* bases) const {
  const int fd = ::fcntl(dir_fd.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("fcntl(F_DUPFD_CLOEXEC, transcript \"" + dir + "\")");
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    const int e = errno;
    ::close(fd);
    return ErrnoError(e, "fdopendir(transcript \"" + dir + "\")");
  }
  ::rewinddir(d);
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    uint64_t base = 0;
    if (ParseSegmentName(e->d_name, &base)) bases->push_back(base);
    errno = 0;
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoError(err, "readdir(transcript \"" + dir + "\")");
  std::sort(bases->begin(), bases->end());
  return Ok();
}

Result<void> OutputLog::Impl::DeleteOldest() {
  const Segment& s = segments.front();
  if (::unlinkat(dir_fd.get(), SegmentName(s.base).c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoError("unlinkat(transcript \"" + PathOf(s.base) + "\")");
  }
  if (read_base == s.base) {
    read_fd.Reset();
    read_base = kNone;
  }
  if (segments.size() == 1) write_fd.Reset();
  disk_bytes -= s.file_bytes;
  segments.erase(segments.begin());
  return Ok();
}

// Leaves write_fd open on a segment that can take `record_bytes` more, within the cap.
Result<void> OutputLog::Impl::PrepareSegment(uint64_t offset, uint64_t record_bytes) {
  if (!write_fd.valid() && !segments.empty() && segments.back().appendable) {
    // First append after Open: continue the last segment.
    const int fd = ::openat(dir_fd.get(), SegmentName(segments.back().base).c_str(),
                            O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      write_fd.Reset(fd);
    } else if (errno == ENOENT) {
      disk_bytes -= segments.back().file_bytes;  // removed under us: its range is a gap
      segments.pop_back();
    } else {
      segments.back().appendable = false;
    }
  }
  if (write_fd.valid()) {
    const Segment& cur = segments.back();
    if (!cur.appendable || (cur.file_bytes > 0 && cur.file_bytes + record_bytes > segment_bytes)) {
      write_fd.Reset();  // rotate
    }
  }
  const size_t keep = write_fd.valid() ? 1 : 0;
  while (disk_bytes + record_bytes > options.transcript_max_bytes && segments.size() > keep) {
    MP_RETURN_IF_ERROR(DeleteOldest());
  }
  if (write_fd.valid()) return Ok();
  const std::string name = SegmentName(offset);
  const int fd = ::openat(dir_fd.get(), name.c_str(),
                          O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoError("openat(transcript \"" + dir + "\", \"" + name + "\", O_CREAT)");
  write_fd.Reset(fd);
  AddSegment(offset, segment_bytes, index_step);
  return Ok();
}

Result<void> OutputLog::Impl::WriteRecord(uint64_t offset, uint8_t stream, const uint8_t* p,
                                          uint32_t n) {
  const uint64_t record_bytes = kHeaderBytes + n;
  MP_RETURN_IF_ERROR(PrepareSegment(offset, record_bytes));
  Segment& cur = segments.back();
  uint8_t header[kHeaderBytes];
  EncodeHeader({offset, stream, n}, header);
  const iovec iov[2] = {{header, kHeaderBytes}, {const_cast<uint8_t*>(p), n}};
  uint64_t written = 0;
  int err = 0;
  if (inject.count > 0) {
    --inject.count;
    err = inject.errnum;
    if (inject.partial) (void)WriteIov(write_fd.get(), iov, record_bytes / 2, &written);
  } else {
    err = WriteIov(write_fd.get(), iov, record_bytes, &written);
  }
  if (err == 0) {
    cur.AddRecord(offset, n);
    cur.file_bytes += record_bytes;
    disk_bytes += record_bytes;
    return Ok();
  }
  if (written > 0 && ::ftruncate(write_fd.get(), static_cast<off_t>(cur.file_bytes)) != 0) {
    cur.appendable = false;  // a partial record stays on disk past valid_bytes
    cur.file_bytes += written;
    disk_bytes += written;
  }
  return ErrnoError(err, "writev(transcript \"" + PathOf(cur.base) + "\", record at " +
                             std::to_string(offset) + ", " + std::to_string(record_bytes) +
                             " bytes)");
}

Result<void> OutputLog::Impl::WriteRecords(uint64_t offset, uint8_t stream, const uint8_t* p,
                                           size_t n) {
  if (removed) return ErrnoError(ENOENT, "transcript \"" + dir + "\" was removed");
  while (n > 0) {
    const uint32_t part = static_cast<uint32_t>(std::min<size_t>(n, max_record));
    MP_RETURN_IF_ERROR(WriteRecord(offset, stream, p, part));
    offset += part;
    p += part;
    n -= part;
  }
  return Ok();
}

// Scans one segment's records, validating each header; repairs or notes damage.
Result<void> OutputLog::Impl::LoadSegment(uint64_t base, uint64_t next_base, bool last) {
  const std::string name = SegmentName(base);
  const std::string path = PathOf(base);
  int fd =
      ::openat(dir_fd.get(), name.c_str(), (last ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
  bool writable = last;
  if (fd < 0 && last && (errno == EACCES || errno == EPERM || errno == EROFS)) {
    fd = ::openat(dir_fd.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    writable = false;
  }
  if (fd < 0) return ErrnoError("openat(transcript \"" + dir + "\", \"" + name + "\")");
  UniqueFd owner(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("fstat(transcript \"" + path + "\")");
  if (!S_ISREG(st.st_mode)) return ErrnoError(EINVAL, "transcript \"" + path + "\": not a file");
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  AddSegment(base, file_bytes, std::max(index_step, file_bytes / kMaxIndexPerSegment));
  Segment& s = segments.back();
  s.file_bytes = file_bytes;
  s.appendable = writable;
  disk_bytes += file_bytes;

  const uint64_t floor = std::max(base, total);  // records never go back
  const uint64_t ceiling = last ? kOffsetLimit : next_base;
  BlockReader reader(fd, file_bytes, "transcript \"" + path + "\"");
  uint64_t pos = 0;
  uint32_t prev_length = 0;
  while (pos < file_bytes) {
    const uint64_t remaining = file_bytes - pos;
    RecordHeader h;
    bool header_ok = false;
    if (remaining >= kHeaderBytes) {
      MP_TRY(const uint8_t* p,
             reader.Get(pos, kHeaderBytes, BlockReader::HeaderBlock(prev_length)));
      h = DecodeHeader(p);
      header_ok = h.stream < kStreamCount && h.length >= 1 && h.length <= kMaxRecordBytes &&
                  h.offset >= std::max(floor, s.first == kNone ? 0 : s.end) && h.offset < ceiling &&
                  h.length <= ceiling - h.offset;
    }
    if (header_ok && kHeaderBytes + h.length <= remaining) {
      s.AddRecord(h.offset, h.length);
      pos += kHeaderBytes + h.length;
      prev_length = h.length;
      continue;
    }
    const uint64_t held_end = s.first == kNone ? floor : s.end;
    const bool torn = last && (remaining < kHeaderBytes || header_ok);
    if (torn) {
      // A write cut short by a crash. A whole header tells the range the record was for.
      const uint64_t lost_to = header_ok ? h.offset + h.length : held_end;
      std::string line = name + ": torn record at byte " + std::to_string(pos) + " (" +
                         std::to_string(remaining) + " bytes)";
      if (lost_to > held_end) line += ", offsets " + Range(held_end, lost_to) + " are a gap";
      if (writable && ::ftruncate(fd, static_cast<off_t>(pos)) == 0) {
        line += "; truncated away";
        disk_bytes -= file_bytes - pos;
        s.file_bytes = pos;
      } else {
        line += "; left in place (not writable)";
        s.appendable = false;
      }
      Note(std::move(line));
      total = std::max(total, lost_to);
    } else {
      // Damage: the rest of this file is unreadable. Up to the next segment that is an exact
      // gap; in the last one the bytes left bound the offsets they could have held, and the
      // whole bound is reported so that no offset is handed out twice.
      s.appendable = false;
      const uint64_t gap_to = last ? held_end + remaining : next_base;
      Note(name + ": invalid record header at byte " + std::to_string(pos) +
           "; the rest of the file is unreadable, offsets " + Range(held_end, gap_to) +
           " are a gap");
      if (last) total = std::max(total, gap_to);
    }
    break;
  }
  if (s.first != kNone) total = std::max(total, s.end);
  if (last) total = std::max(total, base);  // the segment was made for output at `base`
  if (!writable) s.appendable = false;
  return Ok();
}

Result<int> OutputLog::Impl::SegmentFd(const Segment& s) const {
  if (&s == &segments.back() && write_fd.valid()) return write_fd.get();
  if (read_base == s.base) return read_fd.get();
  const int fd =
      ::openat(dir_fd.get(), SegmentName(s.base).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoError("openat(transcript \"" + PathOf(s.base) + "\")");
  read_fd.Reset(fd);
  read_base = s.base;
  return fd;
}

// Copies transcript bytes from pos (< stop) into b and returns the new pos. When nothing is
// held on disk at pos, returns pos with *hole = the next offset held on disk (kNone: none).
Result<uint64_t> OutputLog::Impl::ReadDisk(uint64_t pos, uint64_t stop, ReadBuilder& b,
                                           std::optional<uint64_t>* hole) const {
  const uint64_t start = pos;
  for (const Segment& s : segments) {
    if (s.first == kNone || s.end <= pos) continue;
    if (s.first > pos) {
      *hole = s.first;
      return pos;
    }
    Result<int> fd = SegmentFd(s);
    if (!fd.has_value()) {
      if (fd.error().errnum == ENOENT) continue;  // removed under us: its range is a gap
      return std::move(fd).error();
    }
    auto it = std::upper_bound(s.index.begin(), s.index.end(), pos,
                               [](uint64_t p, const IndexEntry& e) { return p < e.offset; });
    uint64_t file_pos = it == s.index.begin() ? 0 : std::prev(it)->file_pos;
    BlockReader reader(*fd, s.valid_bytes, "transcript \"" + PathOf(s.base) + "\"");
    uint32_t prev_length = 0;
    while (file_pos < s.valid_bytes) {
      if (s.valid_bytes - file_pos < kHeaderBytes) break;
      MP_TRY(const uint8_t* hp,
             reader.Get(file_pos, kHeaderBytes, BlockReader::HeaderBlock(prev_length)));
      const RecordHeader h = DecodeHeader(hp);
      if (h.stream >= kStreamCount || h.length == 0 ||
          h.length > s.valid_bytes - file_pos - kHeaderBytes) {
        return ErrnoError(EIO, reader.what() + ": record header at byte " +
                                   std::to_string(file_pos) + " changed since it was written");
      }
      const uint64_t record_end = h.offset + h.length;
      if (h.offset > pos) {  // pos is in a hole (a failed write)
        if (pos == start) *hole = h.offset;
        return pos;
      }
      if (record_end > pos) {
        const size_t n =
            static_cast<size_t>(std::min<uint64_t>({record_end - pos, b.room(), stop - pos}));
        if (n == 0) return pos;
        uint8_t* dst = b.Add(pos, h.stream, n);
        if (dst == nullptr) return pos;
        MP_TRY(const uint8_t* src, reader.Get(file_pos + kHeaderBytes + (pos - h.offset), n));
        std::memcpy(dst, src, n);
        pos += n;
        if (pos < record_end) return pos;
      }
      file_pos += kHeaderBytes + h.length;
      prev_length = h.length;
    }
    if (pos > start) return pos;
    return ErrnoError(EIO, "transcript \"" + PathOf(s.base) + "\": no record holds offset " +
                               std::to_string(pos) + " below the segment's end " +
                               std::to_string(s.end));
  }
  if (pos == start) *hole = kNone;
  return pos;
}

OutputLog::OutputLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OutputLog::~OutputLog() = default;

Result<std::unique_ptr<OutputLog>> OutputLog::Create(const std::string& dir,
                                                     const OutputLogOptions& options) {
  MP_RETURN_IF_ERROR(ValidateOptions(options));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir(transcript \"" + dir + "\")");
  }
  auto impl = std::make_unique<Impl>(dir, options);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoError("open(transcript \"" + dir + "\")");
  impl->dir_fd.Reset(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("fstat(transcript \"" + dir + "\")");
  if ((st.st_mode & 07777) != 0700 && ::fchmod(fd, 0700) != 0) {
    return ErrnoError("fchmod(transcript \"" + dir + "\", 0700)");
  }
  std::vector<uint64_t> bases;
  MP_RETURN_IF_ERROR(impl->ListSegments(&bases));
  if (!bases.empty()) {
    return ErrnoError(EEXIST, "transcript \"" + dir + "\" already holds " +
                                  SegmentName(bases.front()) + ": use Open");
  }
  return std::unique_ptr<OutputLog>(new OutputLog(std::move(impl)));
}

Result<std::unique_ptr<OutputLog>> OutputLog::Open(const std::string& dir,
                                                   const OutputLogOptions& options) {
  MP_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>(dir, options);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoError("open(transcript \"" + dir + "\")");
  impl->dir_fd.Reset(fd);
  std::vector<uint64_t> bases;
  MP_RETURN_IF_ERROR(impl->ListSegments(&bases));
  for (size_t i = 0; i < bases.size(); ++i) {
    const bool last = i + 1 == bases.size();
    const size_t segments_before = impl->segments.size();
    const uint64_t disk_before = impl->disk_bytes;
    Result<void> loaded = impl->LoadSegment(bases[i], last ? kNone : bases[i + 1], last);
    if (!loaded.has_value()) {
      // Unreadable file: skip it; its range reads as a gap. A later segment still loads.
      impl->segments.resize(segments_before);
      impl->disk_bytes = disk_before;
      impl->Note(SegmentName(bases[i]) + ": skipped: " + loaded.error().ToString());
      if (last) impl->total = std::max(impl->total, bases[i]);
    }
  }
  impl->ring.Reset(impl->total);
  auto log = std::unique_ptr<OutputLog>(new OutputLog(std::move(impl)));
  log->total_ = log->impl_->total;
  return log;
}

Result<uint64_t> OutputLog::Append(wire::OutputStream stream, const uint8_t* data, size_t length) {
  return AppendAt(impl_->total, stream, data, length);
}

uint64_t OutputLog::held_end() const {
  const Impl& m = *impl_;
  if (m.ring.start() < m.ring.end()) return m.ring.end();
  for (auto s = m.segments.rbegin(); s != m.segments.rend(); ++s) {
    if (s->first != kNone) return s->end;
  }
  return 0;
}

Result<uint64_t> OutputLog::AppendAt(uint64_t offset, wire::OutputStream stream,
                                     const uint8_t* data, size_t length) {
  Impl& m = *impl_;
  if (offset != m.total) {
    const bool ring_empty = m.ring.start() == m.ring.end();
    if (offset < held_end() || offset + length < m.total || !ring_empty) {
      return ErrnoError(EINVAL, "output log: cannot write " + Range(offset, offset + length) +
                                    ": it holds output up to " + std::to_string(held_end()) +
                                    " of " + std::to_string(m.total));
    }
    m.ring.Reset(offset);
    m.total = offset;
    total_ = offset;
  }
  if (length == 0) return offset;
  if (length > kOffsetLimit - offset) {
    return ErrnoError(EOVERFLOW, "output log: offset " + std::to_string(offset) + " + " +
                                     std::to_string(length) + " passes the offset limit");
  }
  const auto s = static_cast<uint8_t>(stream);
  Result<void> written = m.WriteRecords(offset, s, data, length);
  m.ring.Append(offset, s, data, length);
  m.total += length;
  total_ = m.total;
  if (!written.has_value()) {
    m.unwritten_to = m.total;
    return std::move(written).error().Wrap(
        "output " + Range(offset, offset + length) +
        " not all written to the transcript; the ring holds what fits, the rest reads as a gap");
  }
  return offset;
}

Result<wire::OutputRead> OutputLog::Read(uint64_t since, uint32_t limit) const {
  const Impl& m = *impl_;
  if (limit == 0 || limit > wire::kMaxChunkBytes) {
    return ErrnoError(EINVAL, "read output: limit " + std::to_string(limit) + " is outside 1.." +
                                  std::to_string(wire::kMaxChunkBytes));
  }
  if (since > m.total) {
    return ErrnoError(ERANGE, "read output: since " + std::to_string(since) +
                                  " is beyond the end of the output (total " +
                                  std::to_string(m.total) + ")");
  }
  wire::OutputRead out;
  out.total = m.total;
  ReadBuilder b(out, limit);
  uint64_t pos = since;
  while (pos < m.total && b.room() > 0) {
    const uint64_t ring_start = m.ring.start();
    if (pos >= ring_start) {
      const uint64_t next = m.ring.Read(pos, b);
      if (next == pos) break;  // chunk cap
      pos = next;
      continue;
    }
    std::optional<uint64_t> hole;
    MP_TRY(const uint64_t next, m.ReadDisk(pos, ring_start, b, &hole));
    if (next > pos) {
      pos = next;
      continue;
    }
    if (!hole.has_value()) break;  // chunk cap
    const uint64_t to = std::min(*hole, ring_start);
    if (!b.AddGap(pos, to)) break;  // gap cap
    pos = to;
  }
  out.next = pos;
  return out;
}

uint64_t OutputLog::first_held() const {
  for (const Segment& s : impl_->segments) {
    if (s.first != kNone) return std::min(s.first, impl_->ring.start());
  }
  return impl_->ring.start();
}

Result<void> OutputLog::Sync() {
  Impl& m = *impl_;
  if (m.removed) return ErrnoError(ENOENT, "transcript \"" + m.dir + "\" was removed");
  if (m.write_fd.valid() && ::fdatasync(m.write_fd.get()) != 0) {
    return ErrnoError("fdatasync(transcript \"" + m.PathOf(m.segments.back().base) + "\")");
  }
  if (::fsync(m.dir_fd.get()) != 0) return ErrnoError("fsync(transcript \"" + m.dir + "\")");
  return Ok();
}

Result<void> OutputLog::RemoveFiles() {
  Impl& m = *impl_;
  if (m.removed) return Ok();
  m.write_fd.Reset();
  m.read_fd.Reset();
  m.read_base = kNone;
  std::vector<uint64_t> bases;
  MP_RETURN_IF_ERROR(m.ListSegments(&bases));  // includes files Open skipped
  for (uint64_t base : bases) {
    if (::unlinkat(m.dir_fd.get(), SegmentName(base).c_str(), 0) != 0 && errno != ENOENT) {
      return ErrnoError("unlinkat(transcript \"" + m.PathOf(base) + "\")");
    }
  }
  m.segments.clear();
  m.disk_bytes = 0;
  m.removed = true;  // from here on the ring alone holds output
  m.dir_fd.Reset();
  if (::rmdir(m.dir.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("rmdir(transcript \"" + m.dir + "\")");
  }
  return Ok();
}

bool OutputLog::ReleaseRing() {
  Impl& m = *impl_;
  const uint64_t ring_start = m.ring.start();
  if (ring_start < m.total) {
    if (m.unwritten_to > ring_start) return false;  // a failed write: only the ring has it
    uint64_t disk_first = kNone;
    for (const Segment& seg : m.segments) {
      if (seg.first != kNone) {
        disk_first = seg.first;
        break;
      }
    }
    // The disk has dropped bytes the ring still holds (a ring larger than the cap).
    if (disk_first == kNone || disk_first > ring_start) return false;
  }
  m.ring.Release(m.total);
  return true;
}

size_t OutputLog::memory_bytes() const {
  const Impl& m = *impl_;
  size_t bytes = sizeof(Impl) + m.ring.memory_bytes() + m.segments.capacity() * sizeof(Segment);
  for (const Segment& s : m.segments) bytes += s.index.capacity() * sizeof(IndexEntry);
  return bytes;
}

const std::vector<std::string>& OutputLog::recovery_notes() const { return impl_->notes; }

void OutputLog::FailWritesForTest(int errnum, int count, bool partial) {
  impl_->inject = {errnum, count, partial};
}

}  // namespace mp::supervisor
