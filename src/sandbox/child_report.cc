#include "sandbox/child_report.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mp::sandbox {
namespace {

size_t CopyTruncated(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  if (src != nullptr) {
    for (; i + 1 < cap && src[i] != '\0'; ++i) dst[i] = src[i];
  }
  dst[i] = '\0';
  return i;
}

}  // namespace

bool SendReportInChild(int fd, const SpawnReport& report) {
  // write(), not send(): `fd` is the SEQPACKET socket or, in the command's
  // process, the exec-status pipe. Both take the record whole. SIGPIPE is
  // blocked here, so a vanished reader gives EPIPE, not death.
  ssize_t n;
  do {
    n = ::write(fd, &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof report);
}

[[noreturn]] void FailInChild(int report_fd, ChildStep step, int errnum, const char* detail) {
  SpawnReport r;
  std::memset(&r, 0, sizeof r);
  r.kind = SpawnReport::kFailed;
  r.step = static_cast<uint32_t>(step);
  r.errnum = errnum;
  CopyTruncated(r.detail, sizeof r.detail, detail);
  SendReportInChild(report_fd, r);
  ::_exit(126);
}

void BeginStepInChild(const ChildPlan& p, ChildStep step) {
  SpawnReport r;
  std::memset(&r, 0, sizeof r);
  r.kind = SpawnReport::kProgress;
  r.step = static_cast<uint32_t>(step);
  SendReportInChild(p.report_fd, r);
  if (p.test_fail_step == static_cast<uint32_t>(step)) {
    FailInChild(p.report_fd, step, ECANCELED, "failed on purpose (test hook)");
  }
}

}  // namespace mp::sandbox
