// Address classes for the egress gateway. See address_class.h.
#include "egress/address_class.h"

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <string>

namespace mp::egress {
namespace {

using V4 = std::array<uint8_t, 4>;
using V6 = std::array<uint8_t, 16>;

bool InV4(const V4& a, V4 base, unsigned prefix) {
  const uint32_t x = (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | a[3];
  const uint32_t b =
      (uint32_t{base[0]} << 24) | (uint32_t{base[1]} << 16) | (uint32_t{base[2]} << 8) | base[3];
  const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (x & mask) == (b & mask);
}

bool InV6(const V6& a, const V6& base, unsigned prefix) {
  for (unsigned i = 0; i < 16 && prefix > 0; ++i) {
    const unsigned bits = prefix >= 8 ? 8 : prefix;
    const auto mask = static_cast<uint8_t>(0xff << (8 - bits));
    if ((a[i] & mask) != (base[i] & mask)) return false;
    prefix -= bits;
  }
  return true;
}

V6 Six(std::initializer_list<uint16_t> groups) {
  V6 out{};
  size_t i = 0;
  for (const uint16_t g : groups) {
    out[i++] = static_cast<uint8_t>(g >> 8);
    out[i++] = static_cast<uint8_t>(g & 0xff);
  }
  return out;
}

AddressClass ClassifyV4(const V4& a) {
  if (a == V4{169, 254, 169, 254}) return AddressClass::kMetadata;
  if (InV4(a, {127, 0, 0, 0}, 8)) return AddressClass::kLoopback;
  if (InV4(a, {10, 0, 0, 0}, 8) || InV4(a, {172, 16, 0, 0}, 12) || InV4(a, {192, 168, 0, 0}, 16) ||
      InV4(a, {100, 64, 0, 0}, 10)) {
    return AddressClass::kPrivate;
  }
  if (InV4(a, {169, 254, 0, 0}, 16)) return AddressClass::kLinkLocal;
  if (InV4(a, {224, 0, 0, 0}, 4) || a == V4{255, 255, 255, 255}) return AddressClass::kMulticast;
  if (InV4(a, {0, 0, 0, 0}, 8) || InV4(a, {192, 0, 0, 0}, 24) || InV4(a, {192, 0, 2, 0}, 24) ||
      InV4(a, {198, 18, 0, 0}, 15) || InV4(a, {198, 51, 100, 0}, 24) ||
      InV4(a, {203, 0, 113, 0}, 24) || InV4(a, {240, 0, 0, 0}, 4)) {
    return AddressClass::kReserved;
  }
  return AddressClass::kPublic;
}

V4 V4At(const V6& a, size_t offset) {
  return {a[offset], a[offset + 1], a[offset + 2], a[offset + 3]};
}

AddressClass ClassifyV6(const V6& a) {
  if (a == Six({0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254})) return AddressClass::kMetadata;
  if (a == Six({0, 0, 0, 0, 0, 0, 0, 1})) return AddressClass::kLoopback;
  // IPv4 inside IPv6 takes the inner address's class: mapped (the canonical text is IPv4
  // already; kept for raw bytes) and NAT64, which reach that IPv4 address. IPv4-compatible
  // (::a.b.c.d, deprecated) and the unspecified address are reserved.
  if (InV6(a, Six({0, 0, 0, 0, 0, 0xffff, 0, 0}), 96) ||
      InV6(a, Six({0x64, 0xff9b, 0, 0, 0, 0, 0, 0}), 96)) {
    return ClassifyV4(V4At(a, 12));
  }
  if (InV6(a, V6{}, 96)) return AddressClass::kReserved;
  if (InV6(a, Six({0x2002, 0, 0, 0, 0, 0, 0, 0}), 16)) {
    return ClassifyV4(V4At(a, 2));  // 6to4 relays reach the IPv4 address inside
  }
  if (InV6(a, Six({0xfc00, 0, 0, 0, 0, 0, 0, 0}), 7) ||
      InV6(a, Six({0xfec0, 0, 0, 0, 0, 0, 0, 0}), 10)) {
    return AddressClass::kPrivate;
  }
  if (InV6(a, Six({0xfe80, 0, 0, 0, 0, 0, 0, 0}), 10)) return AddressClass::kLinkLocal;
  if (InV6(a, Six({0xff00, 0, 0, 0, 0, 0, 0, 0}), 8)) return AddressClass::kMulticast;
  if (InV6(a, Six({0x2001, 0, 0, 0, 0, 0, 0, 0}), 32) ||       // Teredo
      InV6(a, Six({0x2001, 0x0db8, 0, 0, 0, 0, 0, 0}), 32) ||  // documentation
      InV6(a, Six({0x0100, 0, 0, 0, 0, 0, 0, 0}), 64) ||       // discard-only
      InV6(a, Six({0x2001, 0x0002, 0, 0, 0, 0, 0, 0}), 48) ||  // benchmarking
      !InV6(a, Six({0x2000, 0, 0, 0, 0, 0, 0, 0}), 3)) {       // outside global unicast
    return AddressClass::kReserved;
  }
  return AddressClass::kPublic;
}

}  // namespace

AddressClass ClassifyAddress(std::string_view address) {
  if (address.empty() || address.size() >= INET6_ADDRSTRLEN) return AddressClass::kNotAnAddress;
  const std::string text(address);
  V6 bytes{};
  if (inet_pton(AF_INET, text.c_str(), bytes.data()) == 1) return ClassifyV4(V4At(bytes, 0));
  if (inet_pton(AF_INET6, text.c_str(), bytes.data()) == 1) return ClassifyV6(bytes);
  return AddressClass::kNotAnAddress;
}

std::string_view ToString(AddressClass c) {
  switch (c) {
    case AddressClass::kPublic:
      return "public";
    case AddressClass::kLoopback:
      return "loopback";
    case AddressClass::kPrivate:
      return "private";
    case AddressClass::kLinkLocal:
      return "link-local";
    case AddressClass::kMetadata:
      return "metadata";
    case AddressClass::kMulticast:
      return "multicast";
    case AddressClass::kReserved:
      return "reserved";
    case AddressClass::kNotAnAddress:
      return "not an address";
  }
  return "?";
}

}  // namespace mp::egress
