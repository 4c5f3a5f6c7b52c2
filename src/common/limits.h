// The value ranges of the limits a policy sets and a request may lower, each defined once with
// its unit: checked by the policy loader, by Tighten, and by the wire decoder of policy
// listings (docs/policies.md lists them). Data only; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mp::common {

// An inclusive range of unsigned integers.
struct UintRange {
  uint64_t min = 0;
  uint64_t max = UINT64_MAX;
};

// Upper bound of every *_bytes field: 1 EiB (no host has more; keeps arithmetic from
// overflowing).
inline constexpr uint64_t kMaxByteCount = uint64_t{1} << 60;

// limits.*: the session's cgroup.
inline constexpr UintRange kMemoryMaxBytesRange{uint64_t{16} << 20, kMaxByteCount};  // bytes
inline constexpr UintRange kMemorySwapMaxBytesRange{0, kMaxByteCount};               // bytes
inline constexpr UintRange kPtyMaxRange{1, 4096};      // terminals; 4096 = kernel.pty.max default
inline constexpr UintRange kPidsMaxRange{8, 4194304};  // tasks; 4194304 = PID_MAX_LIMIT (64-bit)
// Percent of one CPU (250 = two and a half CPUs); 100000 = a thousand CPUs.
inline constexpr UintRange kCpuMaxPercentRange{1, 100000};

// deadlines.*: seconds, 0 = none; at most 30 days.
inline constexpr UintRange kDeadlineSecondsRange{0, uint64_t{30} * 86400};

// output.*: a session's output buffers and its rate ceiling.
inline constexpr UintRange kRingBytesRange{uint64_t{64} << 10, uint64_t{256} << 20};  // bytes
inline constexpr UintRange kTranscriptMaxBytesRange{uint64_t{1} << 20, uint64_t{1} << 40};
inline constexpr UintRange kMaxRateBytesPerSecondRange{0, uint64_t{1} << 30};  // 0 = no ceiling
inline constexpr UintRange kMaxRateWindowSecondsRange{1, 3600};                // seconds

// One environment value (env.set, a request's env), bytes.
inline constexpr size_t kMaxEnvValueBytes = size_t{32} * 1024;

}  // namespace mp::common
