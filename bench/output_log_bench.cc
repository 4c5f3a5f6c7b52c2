// output_log_bench: throughput of OutputLog (src/supervisor/output_log.h) with the default
// options (1 MiB ring, 64 MiB transcript in 8 segments) in a temporary directory.
//   append-64k   1 GiB appended in 64 KiB chunks, one stream
//   append-256   256 MiB appended in 256-byte chunks, alternating stdout/stderr
//   read-disk    the held transcript read back in kMaxChunkBytes pieces (page cache warm)
//   open         Open() of the resulting directory (scans every record header)
//   pipe-read    1 GiB from a 1 MiB pipe (a writer thread) into a log: read(64 KiB) + Append,
//                the supervisor's way without the fd store
//   pipe-stage   the same through an OutputStage (output_stage.h): header pwrite + splice +
//                pread + Append + ftruncate per chunk, the way with the fd store; its line
//                gives ratio = its throughput / pipe-read's
// No privileges needed. Usage: output_log_bench [--dir PARENT] [--gib N]
// Prints one "BENCH name=… mib_per_s=… …" line per case; figures depend on the filesystem.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/output_log.h"
#include "supervisor/output_stage.h"

namespace {

using mp::supervisor::OutputLog;
using mp::supervisor::OutputLogOptions;
using mp::wire::OutputStream;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "output_log_bench: %s\n", what.c_str());
  std::exit(1);
}

void Report(const char* name, uint64_t bytes, uint64_t ops, double seconds, size_t memory) {
  std::printf(
      "BENCH name=%s bytes=%llu ops=%llu seconds=%.3f mib_per_s=%.1f ops_per_s=%.0f "
      "memory_bytes=%zu\n",
      name, static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(ops), seconds,
      static_cast<double>(bytes) / (1 << 20) / seconds, static_cast<double>(ops) / seconds, memory);
}

std::unique_ptr<OutputLog> Make(const std::string& dir, const OutputLogOptions& o);

// `total` bytes written into a 1 MiB pipe by a thread, moved into a new log at `dir` 64 KiB at
// a time, with `stage` or with read(2). Returns the seconds taken.
double PipeToLog(const std::string& dir, const OutputLogOptions& o,
                 const std::vector<uint8_t>& pool, uint64_t total, bool stage) {
  auto log = Make(dir, o);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) Die("pipe2: " + std::string(std::strerror(errno)));
  (void)::fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
  (void)::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  std::thread writer([&] {
    for (uint64_t done = 0; done < total;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(64 << 10, total - done));
      const ssize_t w = ::write(fds[1], pool.data() + (done % (pool.size() - n)), n);
      if (w <= 0) Die("write(pipe): " + std::string(std::strerror(errno)));
      done += static_cast<uint64_t>(w);
    }
    ::close(fds[1]);
  });
  auto staged = mp::supervisor::OutputStage::Create("bench");
  if (!staged.has_value()) Die(staged.error().ToString());
  std::vector<uint8_t> buf(64 << 10);
  const auto start = Clock::now();
  for (;;) {
    ssize_t n = 0;
    if (stage) {
      auto t = staged->Take(fds[0], OutputStream::kStdout, log->total(), buf.data(), buf.size());
      n = t.has_value() ? static_cast<ssize_t>(*t) : -1;
      if (!t.has_value()) errno = t.error().errnum;
    } else {
      n = ::read(fds[0], buf.data(), buf.size());
    }
    if (n == 0) break;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {fds[0], POLLIN, 0};
      (void)::poll(&p, 1, -1);
      continue;
    }
    if (n < 0) Die("taking a chunk: " + std::string(std::strerror(errno)));
    auto r = log->Append(OutputStream::kStdout, buf.data(), static_cast<size_t>(n));
    if (!r.has_value()) Die(r.error().ToString());
    if (stage) {
      if (auto c = staged->Clear(); !c.has_value()) Die(c.error().ToString());
    }
  }
  const double seconds = Seconds(start);
  writer.join();
  ::close(fds[0]);
  if (log->total() != total) Die("pipe: moved " + std::to_string(log->total()) + " bytes");
  return seconds;
}

std::unique_ptr<OutputLog> Make(const std::string& dir, const OutputLogOptions& o) {
  auto log = OutputLog::Create(dir, o);
  if (!log.has_value()) Die(log.error().ToString());
  return std::move(log).value();
}

}  // namespace

int main(int argc, char** argv) {
  std::string parent = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
  uint64_t gib = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      parent = argv[++i];
    } else if (std::strcmp(argv[i], "--gib") == 0 && i + 1 < argc) {
      gib = std::strtoull(argv[++i], nullptr, 10);
    } else {
      Die("usage: output_log_bench [--dir PARENT] [--gib N]");
    }
  }
  std::string tmpl = parent + "/mp-output-log-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp " + tmpl + ": " + std::strerror(errno));
  const std::string root = tmpl;
  const OutputLogOptions options;

  std::vector<uint8_t> pool(1 << 20);
  std::mt19937_64 rng(1);
  for (auto& b : pool) b = static_cast<uint8_t>(rng());

  {
    auto log = Make(root + "/a", options);
    const uint64_t total = gib << 30;
    const size_t chunk = 64 << 10;
    const auto start = Clock::now();
    for (uint64_t done = 0; done < total; done += chunk) {
      auto r =
          log->Append(OutputStream::kStdout, pool.data() + (done % (pool.size() - chunk)), chunk);
      if (!r.has_value()) Die(r.error().ToString());
    }
    if (auto s = log->Sync(); !s.has_value()) Die(s.error().ToString());
    Report("append-64k", total, total / chunk, Seconds(start), log->memory_bytes());

    const uint64_t from = log->first_held();
    uint64_t bytes = 0;
    uint64_t reads = 0;
    const auto read_start = Clock::now();
    for (uint64_t pos = from; pos < log->total();) {
      auto r = log->Read(pos, static_cast<uint32_t>(mp::wire::kMaxChunkBytes));
      if (!r.has_value()) Die(r.error().ToString());
      bytes += r->data.size();
      ++reads;
      pos = r->next;
    }
    Report("read-disk", bytes, reads, Seconds(read_start), log->memory_bytes());
    log.reset();

    const auto open_start = Clock::now();
    auto opened = OutputLog::Open(root + "/a", options);
    if (!opened.has_value()) Die(opened.error().ToString());
    Report("open", (*opened)->total() - (*opened)->first_held(), 1, Seconds(open_start),
           (*opened)->memory_bytes());
  }
  {
    auto log = Make(root + "/b", options);
    const uint64_t total = 256ull << 20;
    const size_t chunk = 256;
    const auto start = Clock::now();
    uint64_t ops = 0;
    for (uint64_t done = 0; done < total; done += chunk, ++ops) {
      auto r = log->Append(ops % 2 == 0 ? OutputStream::kStdout : OutputStream::kStderr,
                           pool.data() + (done % (pool.size() - chunk)), chunk);
      if (!r.has_value()) Die(r.error().ToString());
    }
    Report("append-256", total, ops, Seconds(start), log->memory_bytes());
  }
  {
    const uint64_t total = gib << 30;
    // Alternated, best of three each: the figures of one run drift with the page cache.
    double read_s = 1e9, stage_s = 1e9;
    for (int i = 0; i < 3; ++i) {
      read_s = std::min(read_s, PipeToLog(root + "/r" + std::to_string(i), options, pool, total,
                                          /*stage=*/false));
      std::filesystem::remove_all(root + "/r" + std::to_string(i));
      stage_s = std::min(stage_s, PipeToLog(root + "/s" + std::to_string(i), options, pool, total,
                                            /*stage=*/true));
      std::filesystem::remove_all(root + "/s" + std::to_string(i));
    }
    Report("pipe-read", total, total >> 16, read_s, 0);
    Report("pipe-stage", total, total >> 16, stage_s, 0);
    std::printf("BENCH name=pipe-stage-ratio ratio=%.3f\n", read_s / stage_s);
  }
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  return 0;
}
