// Stub DNS queries and answers. See dns_message.h.
#include "egress/dns_message.h"

#include "egress/host_name.h"

namespace mp::egress {
namespace {

constexpr uint16_t kFlagResponse = 0x8000;
constexpr uint16_t kOpcodeMask = 0x7800;
constexpr uint16_t kFlagAuthoritative = 0x0400;
constexpr uint16_t kFlagTruncated = 0x0200;
constexpr uint16_t kFlagRecursionDesired = 0x0100;
constexpr uint16_t kFlagRecursionAvailable = 0x0080;
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kPointerToQuestion = 0xc000 | kDnsHeaderSize;

uint16_t Get16(std::string_view b, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(b[at]) << 8) |
                               static_cast<uint8_t>(b[at + 1]));
}

void Put16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

void Put32(std::string& out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v >> 16));
  Put16(out, static_cast<uint16_t>(v & 0xffff));
}

}  // namespace

Result<DnsQuery> ParseDnsQuery(std::string_view bytes) {
  if (bytes.size() < kDnsHeaderSize) return PlainError("DNS query shorter than its header");
  if (bytes.size() > kMaxDnsQuerySize) return PlainError("DNS query over 512 bytes");
  const uint16_t flags = Get16(bytes, 2);
  if ((flags & kFlagResponse) != 0) return PlainError("a DNS response, not a query");
  if ((flags & kOpcodeMask) != 0) return PlainError("DNS opcode other than QUERY");
  if ((flags & kFlagTruncated) != 0) return PlainError("a truncated DNS query");
  if (Get16(bytes, 4) != 1) return PlainError("DNS query without exactly one question");
  if (Get16(bytes, 6) != 0 || Get16(bytes, 8) != 0) {
    return PlainError("DNS query with answer or authority records");
  }
  // Additional records (an EDNS OPT) are allowed and ignored.
  DnsQuery q;
  q.id = Get16(bytes, 0);
  q.recursion_desired = (flags & kFlagRecursionDesired) != 0;
  size_t pos = kDnsHeaderSize;
  std::string dotted;
  bool name_ok = true;
  while (true) {
    if (pos >= bytes.size()) return PlainError("DNS question name runs past the query");
    const auto length = static_cast<uint8_t>(bytes[pos]);
    if ((length & 0xc0) != 0) return PlainError("DNS question name compressed or extended");
    ++pos;
    if (length == 0) break;
    if (bytes.size() - pos < length) return PlainError("DNS question label runs past the query");
    const std::string_view label = bytes.substr(pos, length);
    // A dot inside a label would read as two labels in dotted text: not a host name.
    if (label.find('.') != std::string_view::npos) name_ok = false;
    if (!dotted.empty()) dotted += '.';
    dotted += label;
    pos += length;
  }
  if (bytes.size() - pos < 4) return PlainError("DNS question without type and class");
  q.type = Get16(bytes, pos);
  q.klass = Get16(bytes, pos + 2);
  pos += 4;
  q.question = std::string(bytes.substr(kDnsHeaderSize, pos - kDnsHeaderSize));
  if (name_ok) {
    Result<std::string> name = NormalizeHostName(dotted);
    if (name) q.name = std::move(*name);
  }
  return q;
}

std::string BuildDnsAnswer(const DnsQuery& query, DnsRcode rcode,
                           std::optional<std::string_view> address, uint32_t ttl_seconds) {
  const bool answer =
      address && rcode == DnsRcode::kNoError && query.klass == kClassIn &&
      ((query.type == static_cast<uint16_t>(DnsType::kA) && address->size() == 4) ||
       (query.type == static_cast<uint16_t>(DnsType::kAaaa) && address->size() == 16));
  std::string out;
  out.reserve(kDnsHeaderSize + query.question.size() + 32);
  Put16(out, query.id);
  uint16_t flags = kFlagResponse | kFlagAuthoritative | kFlagRecursionAvailable;
  if (query.recursion_desired) flags |= kFlagRecursionDesired;
  Put16(out, static_cast<uint16_t>(flags | static_cast<uint8_t>(rcode)));
  Put16(out, 1);               // QDCOUNT
  Put16(out, answer ? 1 : 0);  // ANCOUNT
  Put16(out, 0);               // NSCOUNT
  Put16(out, 0);               // ARCOUNT
  out += query.question;
  if (answer) {
    Put16(out, kPointerToQuestion);  // the name, as in the question
    Put16(out, query.type);
    Put16(out, kClassIn);
    Put32(out, ttl_seconds);
    Put16(out, static_cast<uint16_t>(address->size()));
    out += *address;
  }
  return out;
}

}  // namespace mp::egress
