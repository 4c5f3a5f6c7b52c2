#include "common/port_ranges.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/unique_fd.h"

namespace mp::common {
namespace {

// A decimal port at `*at`: 1 to 5 digits, no leading zero (but "0"), at most 65535.
Result<uint16_t> TakePort(std::string_view text, size_t* at) {
  const size_t start = *at;
  uint32_t v = 0;
  while (*at < text.size() && text[*at] >= '0' && text[*at] <= '9' && *at - start < 6) {
    v = v * 10 + static_cast<uint32_t>(text[*at] - '0');
    ++*at;
  }
  const size_t digits = *at - start;
  if (digits == 0) return PlainError("a port expected at byte " + std::to_string(start));
  if (digits > 1 && text[start] == '0') {
    return PlainError("a port with a leading zero at byte " + std::to_string(start));
  }
  if (digits > 5 || v > 65535) {
    return PlainError("a port over 65535 at byte " + std::to_string(start));
  }
  return static_cast<uint16_t>(v);
}

// `text` without its one final newline, if it has one.
std::string_view Chomp(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

// The whole file at `path` (a /proc/sys file is a few bytes; 64 KiB bounds it).
Result<std::string> ReadSmallFile(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(std::string("open ") + path);
  std::string text;
  char buf[4096];
  while (text.size() < 64 * 1024) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(std::string("read ") + path);
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
  return PlainError(std::string(path) + ": over 64 KiB");
}

}  // namespace

Result<PortRange> ParseEphemeralPortRange(std::string_view text) {
  text = Chomp(text);
  size_t at = 0;
  auto low = TakePort(text, &at);
  const size_t gap = at;
  while (at < text.size() && (text[at] == ' ' || text[at] == '\t')) ++at;
  auto high = at > gap ? TakePort(text, &at) : Result<uint16_t>(PlainError("no separator"));
  if (!low || !high || at != text.size() || *low == 0 || *low > *high) {
    return PlainError("not two ports \"LOW HIGH\" with 0 < LOW <= HIGH <= 65535");
  }
  return PortRange{*low, *high};
}

Result<std::vector<PortRange>> ParseReservedPorts(std::string_view text) {
  text = Chomp(text);
  std::vector<PortRange> out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t item = at;
    MP_TRY(const uint16_t low, TakePort(text, &at));
    uint16_t high = low;
    if (at < text.size() && text[at] == '-') {
      ++at;
      MP_TRY(high, TakePort(text, &at));
      if (high < low) {
        return PlainError("a range " + std::to_string(low) + "-" + std::to_string(high) +
                          " whose end is below its start at byte " + std::to_string(item));
      }
    }
    out.push_back(PortRange{low, high});
    if (at == text.size()) break;
    if (text[at] != ',' || at + 1 == text.size()) {
      return PlainError("a comma and another port expected at byte " + std::to_string(at));
    }
    ++at;
  }
  return out;
}

Result<PortRange> ReadEphemeralPortRange(const char* path) {
  MP_TRY(const std::string text, ReadSmallFile(path));
  auto r = ParseEphemeralPortRange(text);
  if (!r) return r.error().Wrap(path);
  return r;
}

Result<std::vector<PortRange>> ReadReservedPorts(const char* path) {
  MP_TRY(const std::string text, ReadSmallFile(path));
  auto r = ParseReservedPorts(text);
  if (!r) return r.error().Wrap(path);
  return r;
}

bool AnyContains(const std::vector<PortRange>& ranges, uint16_t port) {
  for (const PortRange& r : ranges) {
    if (r.Contains(port)) return true;
  }
  return false;
}

std::string SquattablePortWarning(uint16_t port, PortRange ephemeral,
                                  const std::vector<PortRange>& reserved) {
  if (!ephemeral.Contains(port) || AnyContains(reserved, port)) return "";
  const std::string p = std::to_string(port);
  return "port " + p + " is in the ephemeral range " + std::to_string(ephemeral.low) + "-" +
         std::to_string(ephemeral.high) +
         " (net.ipv4.ip_local_port_range) and not in net.ipv4.ip_local_reserved_ports: a "
         "host-network session may bind it while this service restarts; listen below the "
         "range, or reserve it (sysctl -w net.ipv4.ip_local_reserved_ports=" +
         p + ", keeping the ports already there)";
}

std::vector<std::string> SquattablePortWarnings(const std::vector<uint16_t>& ports) {
  auto range = ReadEphemeralPortRange();
  auto reserved = range ? ReadReservedPorts() : Result<std::vector<PortRange>>(range.error());
  if (!reserved) {
    return {"cannot tell whether a host-network session could take a listen port: " +
            reserved.error().ToString()};
  }
  std::vector<std::string> out;
  for (const uint16_t port : ports) {
    if (std::string w = SquattablePortWarning(port, *range, *reserved); !w.empty()) {
      out.push_back(std::move(w));
    }
  }
  return out;
}

}  // namespace mp::common
