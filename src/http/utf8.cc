#include "http/utf8.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace mp::http {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the sequence a lead byte starts, or 0 when the byte can never start one: ASCII is
// handled by the callers; 80..BF are continuation bytes; C0, C1 could only encode overlong
// ASCII; F5..FF would go beyond U+10FFFF.
size_t SequenceLength(uint8_t lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `b` may be byte `index` (1..3) of a sequence led by `lead`. The second byte's range
// depends on the lead (Unicode table 3-7): E0 A0..BF (no overlongs), ED 80..9F (no UTF-16
// surrogates), F0 90..BF (no overlongs), F4 80..8F (nothing above U+10FFFF).
bool ValidAt(uint8_t lead, size_t index, uint8_t b) {
  if (index == 1) {
    switch (lead) {
      case 0xE0:
        return b >= 0xA0 && b <= 0xBF;
      case 0xED:
        return b >= 0x80 && b <= 0x9F;
      case 0xF0:
        return b >= 0x90 && b <= 0xBF;
      case 0xF4:
        return b >= 0x80 && b <= 0x8F;
      default:
        break;
    }
  }
  return b >= 0x80 && b <= 0xBF;
}

// Appends the valid UTF-8 of `in` to *out, replacing each maximal invalid subpart with one
// U+FFFD (the W3C/WHATWG practice: a lead byte cut short by a byte that cannot continue it is
// one U+FFFD, and that byte is looked at again). Returns where an incomplete sequence at the
// end begins (in.size() when there is none); with `final`, such a tail becomes one U+FFFD.
size_t Decode(std::string_view in, bool final, std::string* out) {
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    // Runs of ASCII go out in one append.
    size_t ascii_end = i;
    for (uint64_t w = 0; n - ascii_end >= sizeof w; ascii_end += sizeof w) {  // 8 at a time
      std::memcpy(&w, p + ascii_end, sizeof w);
      if ((w & 0x8080808080808080ull) != 0) break;
    }
    while (ascii_end < n && p[ascii_end] < 0x80) ++ascii_end;
    if (ascii_end > i) {
      out->append(in.data() + i, ascii_end - i);
      i = ascii_end;
      continue;
    }
    const uint8_t lead = p[i];
    const size_t len = SequenceLength(lead);
    if (len == 0) {
      out->append(kReplacement);
      ++i;
      continue;
    }
    size_t k = 1;
    while (k < len && i + k < n && ValidAt(lead, k, p[i + k])) ++k;
    if (k == len) {
      out->append(in.data() + i, len);
      i += len;
    } else if (i + k == n) {
      // Valid so far and cut by the end of the input.
      if (!final) return i;
      out->append(kReplacement);
      return n;
    } else {
      out->append(kReplacement);
      i += k;
    }
  }
  return n;
}

}  // namespace

size_t Utf8Carry::Feed(std::string_view bytes, std::string* out) {
  const size_t carried_in = carry_len_;
  size_t pos = 0;
  if (carry_len_ > 0) {
    // Complete (or break) the carried sequence with the first bytes of this input.
    const auto lead = static_cast<uint8_t>(carry_[0]);
    const size_t len = SequenceLength(lead);
    while (carry_len_ < len && pos < bytes.size()) {
      const auto b = static_cast<uint8_t>(bytes[pos]);
      if (!ValidAt(lead, carry_len_, b)) break;
      carry_[carry_len_++] = bytes[pos++];
    }
    if (carry_len_ == len) {
      out->append(carry_, len);
      carry_len_ = 0;
    } else if (pos == bytes.size()) {
      // Still incomplete: everything stays carried.
      return carried_in + bytes.size() - carry_len_;
    } else {
      // Broken by bytes[pos], which is decoded afresh below.
      out->append(kReplacement);
      carry_len_ = 0;
    }
  }
  const std::string_view rest = bytes.substr(pos);
  const size_t tail = Decode(rest, /*final=*/false, out);
  // At most 3: Decode stops only at an incomplete sequence. The clamp says so to the compiler
  // (GCC 12 at -O3 cannot see it and warns of an overflow of carry_).
  carry_len_ = std::min(rest.size() - tail, sizeof carry_ - 1);
  for (size_t k = 0; k < carry_len_; ++k) carry_[k] = rest[tail + k];
  return carried_in + bytes.size() - carry_len_;
}

void Utf8Carry::Flush(std::string* out) {
  if (carry_len_ > 0) out->append(kReplacement);
  carry_len_ = 0;
}

std::string ToValidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  Decode(bytes, /*final=*/true, &out);
  return out;
}

}  // namespace mp::http
