// OutputStage (output_stage.h): the memfd between a session's pipe and its transcript.
//
// One chunk, step by step (Session::DrainFd), and what a SIGKILL between two steps leaves:
//   1. pwrite the header (offset T = the log's total, the stream) while the stage is empty.
//      Killed before or during it: nothing staged (the size is the header's or 0); the bytes
//      are in the pipe.
//   2. splice pipe -> memfd. The kernel moves pipe buffers into the file and drops from the
//      pipe exactly what the write took (iter_file_splice_write), under the pipe's lock; a
//      fatal signal cuts the write short, never between the two. Killed before: bytes in the
//      pipe. After: n bytes in the memfd (its size - header), the rest in the pipe.
//   3. pread them into the caller's buffer; 4. OutputLog::Append (one writev per record).
//      Killed in 3 or before 4: the log's total is T; the next supervisor appends the n bytes.
//      Killed during 4: the last record is torn; Open truncates it and reserves its range
//      (total T+n, held end H in [T, T+n)); the next supervisor writes [H, T+n).
//   5. ftruncate the memfd back to the header. Killed between 4 and 5: the log holds
//      [T, T+n) and the same bytes are staged; the next supervisor compares and drops them.
//      ftruncate itself is atomic.
// So each byte is in the pipe, in the memfd, or in the log, and RecoverStaged can tell which
// of the last two holds it from T, n and the reopened log. A graceful stop (SIGTERM) never
// lands between steps: signals are handled by the loop between callbacks, and a chunk's five
// steps run in one callback.
#include "supervisor/output_stage.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mp::supervisor {
namespace {

constexpr char kMagic[8] = {'M', 'P', 'S', 'T', 'A', 'G', 'E', '1'};
constexpr uint8_t kStreamCount = 3;

Result<void> PreadAll(int fd, uint8_t* p, size_t n, off_t pos) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, pos);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError("pread(output stage, at " + std::to_string(pos) + ")");
    if (r == 0) return ErrnoError(EIO, "pread(output stage): ends at " + std::to_string(pos));
    p += r;
    n -= static_cast<size_t>(r);
    pos += r;
  }
  return Ok();
}

Result<uint64_t> Size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("fstat(output stage)");
  return static_cast<uint64_t>(st.st_size);
}

std::string Range(uint64_t from, uint64_t to) {
  return "[" + std::to_string(from) + ", " + std::to_string(to) + ")";
}

}  // namespace

Result<OutputStage> OutputStage::Create(std::string_view session_id) {
  const std::string name = "mp-stage-" + std::string(session_id);
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return ErrnoError("memfd_create(\"" + name + "\")");
  return OutputStage(UniqueFd(fd));
}

Result<OutputStage> OutputStage::Adopt(UniqueFd fd) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat(stored output stage)");
  if (!S_ISREG(st.st_mode)) return ErrnoError(EINVAL, "the stored output stage is not a memfd");
  ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
  return OutputStage(std::move(fd));
}

Result<size_t> OutputStage::Take(int pipe_fd, wire::OutputStream stream, uint64_t at, uint8_t* buf,
                                 size_t max) {
  std::memcpy(header_, kMagic, sizeof kMagic);
  for (int i = 0; i < 8; ++i) header_[8 + i] = static_cast<uint8_t>(at >> (8 * i));
  header_[16] = static_cast<uint8_t>(stream);
  // The stage is empty (size 0 or the header's): a torn header stages nothing.
  if (::pwrite(fd_.get(), header_, sizeof header_, 0) != static_cast<ssize_t>(sizeof header_)) {
    return ErrnoError(errno == 0 ? EIO : errno, "pwrite(output stage header)");
  }
  loff_t pos = kStageHeaderBytes;
  ssize_t n = 0;
  do {
    // Pipe -> file: what the write took is what leaves the pipe. SPLICE_F_NONBLOCK: an empty
    // pipe answers EAGAIN; 0 is an empty pipe without a writer (end of file).
    n = ::splice(pipe_fd, nullptr, fd_.get(), &pos, max, SPLICE_F_NONBLOCK);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("splice(output pipe -> output stage)");
  if (n == 0) return size_t{0};
  MP_RETURN_IF_ERROR(PreadAll(fd_.get(), buf, static_cast<size_t>(n), kStageHeaderBytes));
  return static_cast<size_t>(n);
}

Result<UniqueFd> CreatePtyQueue() {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoError("pipe2(PTY queue)");
  UniqueFd r(ends[0]), w(ends[1]);
  // A pipe reopened through its /proc link is the same pipe (fifo_open); O_RDWR makes the one
  // descriptor its reader and its writer, so it never reads end of file.
  const std::string link = "/proc/self/fd/" + std::to_string(r.get());
  const int fd = ::open(link.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ErrnoError("open(" + link + ", O_RDWR) (PTY queue)");
  return UniqueFd(fd);
}

Result<UniqueFd> AdoptPtyQueue(UniqueFd fd) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat(stored PTY queue)");
  if (!S_ISFIFO(st.st_mode)) return ErrnoError(EINVAL, "the stored PTY queue is not a pipe");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0 ||
      ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
    return ErrnoError("fcntl(stored PTY queue)");
  }
  return fd;
}

Result<size_t> FillPtyQueue(int master, int queue, size_t max) {
  int held = 0;
  if (::ioctl(queue, FIONREAD, &held) != 0) return ErrnoError("ioctl(PTY queue, FIONREAD)");
  if (held > 0) return static_cast<size_t>(held);
  ssize_t n = 0;
  do {
    // The kernel bounds the read by the room in the pipe (do_splice_to): all of it lands there.
    n = ::splice(master, nullptr, queue, nullptr, max, SPLICE_F_NONBLOCK);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("splice(PTY master -> PTY queue)");
  return static_cast<size_t>(n);
}

Result<void> OutputStage::Clear() {
  if (::ftruncate(fd_.get(), kStageHeaderBytes) != 0) return ErrnoError("ftruncate(output stage)");
  return Ok();
}

Result<std::optional<OutputStage::Staged>> OutputStage::Pending() const {
  MP_TRY(const uint64_t size, Size(fd_.get()));
  if (size <= kStageHeaderBytes) return std::optional<Staged>();
  uint8_t h[kStageHeaderBytes];
  MP_RETURN_IF_ERROR(PreadAll(fd_.get(), h, sizeof h, 0));
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0 || h[16] >= kStreamCount) {
    return ErrnoError(EINVAL, "the output stage's header is not one this supervisor writes (" +
                                  std::to_string(size - kStageHeaderBytes) + " bytes staged)");
  }
  Staged s;
  for (int i = 0; i < 8; ++i) s.offset |= uint64_t{h[8 + i]} << (8 * i);
  s.stream = static_cast<wire::OutputStream>(h[16]);
  s.bytes.resize(static_cast<size_t>(size - kStageHeaderBytes));
  MP_RETURN_IF_ERROR(PreadAll(fd_.get(), s.bytes.data(), s.bytes.size(), kStageHeaderBytes));
  return std::optional<Staged>(std::move(s));
}

namespace {

// True when the log's bytes [from, to) equal `expect` (to - from bytes); false on a gap or a
// difference.
Result<bool> LogHolds(const OutputLog& log, uint64_t from, uint64_t to, const uint8_t* expect) {
  uint64_t pos = from;
  while (pos < to) {
    const auto limit = static_cast<uint32_t>(std::min<uint64_t>(to - pos, wire::kMaxChunkBytes));
    MP_TRY(const wire::OutputRead r, log.Read(pos, limit));
    if (!r.gaps.empty() || r.next <= pos || r.data.size() != r.next - pos) return false;
    if (std::memcmp(r.data.data(), expect + (pos - from), r.data.size()) != 0) return false;
    pos = r.next;
  }
  return true;
}

}  // namespace

Result<StageRecovery> RecoverStaged(OutputStage& stage, OutputLog& log) {
  StageRecovery out;
  MP_TRY(auto pending, stage.Pending());
  if (!pending) return out;
  const uint64_t t = pending->offset;
  const uint64_t n = pending->bytes.size();
  const uint64_t total = log.total();
  const uint64_t held = log.held_end();
  out.offset = t;
  const std::string what = std::to_string(n) + " staged bytes for " + Range(t, t + n);
  // The log's tail is lost (not by this chunk): write at T; [total, T) reads as a gap.
  const uint64_t from = total < t ? t : std::max(held, t);
  bool placed = held <= t + n && total <= t + n && from <= t + n;
  if (placed && held > t) {
    MP_TRY(placed, LogHolds(log, t, held, pending->bytes.data()));
  }
  if (!placed) {
    out.outcome = StageRecovery::Outcome::kUnplaced;
    out.note = what + " not written: the transcript holds output up to " + std::to_string(held) +
               " of " + std::to_string(total) +
               (held > t && held <= t + n ? " that differs from them" : "") +
               "; dropped (readers see the transcript as it is)";
  } else if (from == t + n) {
    out.outcome = StageRecovery::Outcome::kWritten;
    out.note = what + " were in the transcript already";
  } else {
    const uint8_t* p = pending->bytes.data() + (from - t);
    const size_t len = static_cast<size_t>(t + n - from);
    auto appended = log.AppendAt(from, pending->stream, p, len);
    if (!appended && log.total() != t + n) return std::move(appended).error().Wrap(what);
    out.outcome = StageRecovery::Outcome::kAppended;
    out.written = len;
    out.lines = static_cast<uint64_t>(std::count(p, p + len, uint8_t{'\n'}));
    out.note = what + ": wrote " + Range(from, t + n) + " to the transcript";
    if (total < t) out.note += "; " + Range(total, t) + " was lost before them and is a gap";
    if (!appended) out.note += " (" + appended.error().ToString() + ")";
  }
  MP_RETURN_IF_ERROR(stage.Clear());
  return out;
}

}  // namespace mp::supervisor
