#include "egress/dns_responder.h"

#include <sys/socket.h>

#include <utility>

namespace mp::egress {

namespace asio = boost::asio;
using asio::ip::udp;

Result<std::shared_ptr<DnsResponder>> DnsResponder::Create(asio::io_context& io, UniqueFd fd,
                                                           const AllowList& allow,
                                                           GatewayCounters& counters) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return ErrnoError("getsockname(dns socket)");
  }
  if (address.ss_family != AF_INET && address.ss_family != AF_INET6) {
    return PlainError("dns socket is not an IPv4/IPv6 socket");
  }
  auto responder = std::make_shared<DnsResponder>(io, allow, counters);
  boost::system::error_code ec;
  responder->socket_.assign(address.ss_family == AF_INET ? udp::v4() : udp::v6(), fd.get(), ec);
  if (ec) return ErrnoError(ec.value(), "assign dns socket");
  (void)fd.Release();  // the socket owns it now
  return responder;
}

DnsResponder::DnsResponder(asio::io_context& io, const AllowList& allow, GatewayCounters& counters)
    : socket_(io), allow_(allow), counters_(counters) {}

void DnsResponder::Start() { Receive(); }

void DnsResponder::Stop() {
  stopped_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void DnsResponder::Receive() {
  socket_.async_receive_from(
      asio::buffer(buffer_), peer_,
      [self = shared_from_this()](boost::system::error_code ec, size_t n) {
        if (self->stopped_ || ec == asio::error::operation_aborted) return;
        if (!ec) {
          std::string answer = self->Answer(std::string_view(self->buffer_.data(), n));
          if (!answer.empty()) {
            boost::system::error_code ignored;  // a full socket buffer drops it, like UDP does
            self->socket_.send_to(asio::buffer(answer), self->peer_, 0, ignored);
          }
        }
        self->Receive();
      });
}

std::string DnsResponder::Answer(std::string_view datagram) {
  Result<DnsQuery> query = ParseDnsQuery(datagram);
  if (!query) return {};
  constexpr uint16_t kClassIn = 1;
  if (query->name.empty() || query->klass != kClassIn || !allow_.PermitsName(query->name)) {
    counters_.dns_nxdomain.fetch_add(1, std::memory_order_relaxed);
    if (on_verdict_) {
      on_verdict_(Verdict{.listener = "dns",
                          .name = query->name,
                          .port = 53,
                          .allowed = false,
                          .reason = query->klass != kClassIn ? "not a query of class IN"
                                                             : "not in this session's allowlist"});
    }
    return BuildDnsAnswer(*query, DnsRcode::kNameError);
  }
  counters_.dns_answered.fetch_add(1, std::memory_order_relaxed);
  if (on_verdict_) {
    on_verdict_(Verdict{.listener = "dns", .name = query->name, .port = 53, .allowed = true});
  }
  if (query->type != static_cast<uint16_t>(DnsType::kA)) {
    return BuildDnsAnswer(*query, DnsRcode::kNoError);  // NODATA: IPv4 only
  }
  std::array<char, 4> address = SyntheticAddress(query->name);
  return BuildDnsAnswer(*query, DnsRcode::kNoError, std::string_view(address.data(), 4),
                        kSyntheticTtlSeconds);
}

std::array<char, 4> DnsResponder::SyntheticAddress(const std::string& name) {
  auto it = synthetic_.find(name);
  uint32_t index;
  if (it != synthetic_.end()) {
    index = it->second;
  } else {
    index = static_cast<uint32_t>(std::min(synthetic_.size() + 1, kMaxSyntheticNames));
    if (synthetic_.size() < kMaxSyntheticNames) synthetic_.emplace(name, index);
  }
  uint32_t host = (198u << 24) | (18u << 16) | index;  // 198.18.0.1 upward
  return {static_cast<char>(host >> 24), static_cast<char>(host >> 16),
          static_cast<char>(host >> 8), static_cast<char>(host)};
}

}  // namespace mp::egress
