// Reporting from the child between clone and exec: a failed step goes to the parent as a
// fixed SpawnReport{step, errno, detail} and the child exits 126. Child side;
// async-signal-safe: no allocation, no locks, no exceptions.
#pragma once

#include "sandbox/child_plan.h"

namespace mp::sandbox {

// Writes `report` whole to `fd` (the handshake socket, or the command's exec-status pipe).
// A vanished reader gives EPIPE (SIGPIPE is blocked in the child): false, as for any record
// not written whole; callers that only inform ignore it.
bool SendReportInChild(int fd, const SpawnReport& report);

// Reports that `step` begins (SpawnReport::kProgress), so that a setup that hangs (a wedged
// mount, a stopped child) can be named when the parent gives up on it. The plan's test hook
// test_fail_step makes exactly that step fail here (ECANCELED), to show each failure is
// reported with its step's name.
void BeginStepInChild(const ChildPlan& p, ChildStep step);

// Reports {step, errnum, detail (truncated to fit)} on `report_fd` and exits 126.
[[noreturn]] void FailInChild(int report_fd, ChildStep step, int errnum, const char* detail);

}  // namespace mp::sandbox
