// The egress gateway's stub DNS on one UDP socket (issue 14): reads each query
// (dns_message.h), answers allowed names (AllowList::PermitsName) with a synthetic A record
// from 198.18.0.0/15 (RFC 2544's benchmarking range: never a real destination; the session's
// default route sends it to the transparent listeners, which go by SNI / Host, not by the
// address), AAAA and other types with NODATA, everything else with NXDOMAIN. It never forwards
// a query. Malformed datagrams are dropped. Runs in monkeyproof-egress on the session's
// io_context; single-threaded.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <map>
#include <memory>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "egress/allow_list.h"
#include "egress/dns_message.h"
#include "egress/gateway_config.h"

namespace mp::egress {

inline constexpr uint32_t kSyntheticTtlSeconds = 60;
inline constexpr size_t kMaxSyntheticNames = 4096;  // then every new name shares the last one

class DnsResponder : public std::enable_shared_from_this<DnsResponder> {
 public:
  // `allow` and `counters` must outlive the responder (the session owns all three).
  static Result<std::shared_ptr<DnsResponder>> Create(boost::asio::io_context& io, UniqueFd fd,
                                                      const AllowList& allow,
                                                      GatewayCounters& counters);
  DnsResponder(boost::asio::io_context& io, const AllowList& allow, GatewayCounters& counters);
  void Start();
  void Stop();
  // Each answered query is reported here (listener "dns", port 53, allowed = answered rather
  // than NXDOMAIN; session_id left to the callback). None by default.
  void SetVerdictCallback(VerdictCallback on_verdict) { on_verdict_ = std::move(on_verdict); }
  // The answer to one datagram; empty when it is dropped. Public for tests.
  std::string Answer(std::string_view datagram);

 private:
  void Receive();
  std::array<char, 4> SyntheticAddress(const std::string& name);

  boost::asio::ip::udp::socket socket_;
  const AllowList& allow_;
  GatewayCounters& counters_;
  VerdictCallback on_verdict_;
  std::array<char, kMaxDnsQuerySize> buffer_{};
  boost::asio::ip::udp::endpoint peer_;
  std::map<std::string, uint32_t> synthetic_;
  bool stopped_ = false;
};

}  // namespace mp::egress
