// The server name of a TLS ClientHello. See client_hello.h.
#include "egress/client_hello.h"

#include <cstdint>
#include <optional>

#include "common/result.h"
#include "egress/host_name.h"

namespace mp::egress {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kServerNameExtension = 0;
constexpr uint8_t kHostNameType = 0;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = (1u << 14) + 256;  // TLSPlaintext limit, with slack

// A cursor over bytes that never reads past the end: a short read makes it fail for good.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  std::optional<uint32_t> Number(size_t width) {
    if (failed_ || data_.size() - pos_ < width) {
      failed_ = true;
      return std::nullopt;
    }
    uint32_t value = 0;
    for (size_t i = 0; i < width; ++i) {
      value = (value << 8) | static_cast<uint8_t>(data_[pos_ + i]);
    }
    pos_ += width;
    return value;
  }
  std::optional<std::string_view> Bytes(size_t n) {
    if (failed_ || data_.size() - pos_ < n) {
      failed_ = true;
      return std::nullopt;
    }
    const std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  // A vector with a `width`-byte length prefix.
  std::optional<std::string_view> Vector(size_t width) {
    const std::optional<uint32_t> n = Number(width);
    if (!n) return std::nullopt;
    return Bytes(*n);
  }
  [[nodiscard]] bool empty() const { return pos_ == data_.size(); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

ClientHelloName Malformed(std::string error) {
  return {ClientHelloName::Status::kMalformed, {}, std::move(error)};
}

// The server_name extension's body: one host_name entry, nothing else of that type.
ClientHelloName ReadServerName(std::string_view body) {
  Reader list_reader(body);
  const std::optional<std::string_view> list = list_reader.Vector(2);
  if (!list || !list_reader.empty()) return Malformed("server_name: bad list length");
  Reader entries(*list);
  std::optional<std::string_view> host;
  while (!entries.empty()) {
    const std::optional<uint32_t> type = entries.Number(1);
    const std::optional<std::string_view> value = entries.Vector(2);
    if (!type || !value) return Malformed("server_name: an entry runs past the list");
    if (*type != kHostNameType) continue;
    if (host) return Malformed("server_name: more than one host_name");
    host = value;
  }
  if (!host) return {ClientHelloName::Status::kAbsent, {}, {}};
  if (CanonicalAddress(*host)) return Malformed("server_name: an address, not a host name");
  Result<std::string> name = NormalizeHostName(*host);
  if (!name) return Malformed("server_name: " + name.error().what);
  return {ClientHelloName::Status::kFound, std::move(*name), {}};
}

ClientHelloName ReadHello(std::string_view hello) {
  Reader r(hello);
  const std::optional<uint32_t> version = r.Number(2);
  const std::optional<std::string_view> random = r.Bytes(32);
  const std::optional<std::string_view> session_id = r.Vector(1);
  const std::optional<std::string_view> ciphers = r.Vector(2);
  const std::optional<std::string_view> compression = r.Vector(1);
  if (!version || !random || !session_id || !ciphers || !compression) {
    return Malformed("ClientHello: a field runs past the message");
  }
  if (*version < 0x0301) return Malformed("ClientHello: a version older than TLS 1.0");
  if (session_id->size() > 32) return Malformed("ClientHello: session id over 32 bytes");
  if (ciphers->empty() || ciphers->size() % 2 != 0) {
    return Malformed("ClientHello: bad cipher suite list");
  }
  if (compression->empty()) return Malformed("ClientHello: no compression method");
  if (r.empty()) return {ClientHelloName::Status::kAbsent, {}, {}};  // no extensions at all
  const std::optional<std::string_view> extensions = r.Vector(2);
  if (!extensions || !r.empty()) return Malformed("ClientHello: bad extensions length");
  Reader ext(*extensions);
  std::optional<ClientHelloName> found;
  while (!ext.empty()) {
    const std::optional<uint32_t> type = ext.Number(2);
    const std::optional<std::string_view> body = ext.Vector(2);
    if (!type || !body) return Malformed("ClientHello: an extension runs past the list");
    if (*type != kServerNameExtension) continue;
    if (found) return Malformed("ClientHello: two server_name extensions");
    found = ReadServerName(*body);
    if (found->status == ClientHelloName::Status::kMalformed) return *found;
  }
  if (!found) return {ClientHelloName::Status::kAbsent, {}, {}};
  return *found;
}

}  // namespace

ClientHelloName ReadClientHelloName(std::string_view bytes) {
  // Gather the handshake bytes of consecutive handshake records until the first handshake
  // message is complete.
  std::string handshake;
  size_t pos = 0;
  while (true) {
    if (bytes.size() - pos < kRecordHeader) return {};
    const auto type = static_cast<uint8_t>(bytes[pos]);
    const auto major = static_cast<uint8_t>(bytes[pos + 1]);
    const size_t length = (static_cast<size_t>(static_cast<uint8_t>(bytes[pos + 3])) << 8) |
                          static_cast<uint8_t>(bytes[pos + 4]);
    if (type != kHandshakeRecord) {
      return Malformed(pos == 0 ? "not a TLS handshake (first byte is not 22)"
                                : "a record other than handshake inside the ClientHello");
    }
    if (major != 3) return Malformed("TLS record with major version other than 3");
    if (length == 0 || length > kMaxRecordPayload)
      return Malformed("TLS record length out of range");
    if (pos + kRecordHeader + length > kMaxClientHelloBytes) {
      return Malformed("ClientHello larger than 64 KiB");
    }
    if (bytes.size() - pos - kRecordHeader < length) return {};
    handshake.append(bytes.substr(pos + kRecordHeader, length));
    pos += kRecordHeader + length;
    if (handshake.size() < 4) continue;
    if (static_cast<uint8_t>(handshake[0]) != kClientHello) {
      return Malformed("the first handshake message is not a ClientHello");
    }
    const size_t hello_length = (static_cast<size_t>(static_cast<uint8_t>(handshake[1])) << 16) |
                                (static_cast<size_t>(static_cast<uint8_t>(handshake[2])) << 8) |
                                static_cast<uint8_t>(handshake[3]);
    if (hello_length + 4 > kMaxClientHelloBytes) return Malformed("ClientHello larger than 64 KiB");
    if (handshake.size() < hello_length + 4) continue;
    return ReadHello(std::string_view(handshake).substr(4, hello_length));
  }
}

}  // namespace mp::egress
