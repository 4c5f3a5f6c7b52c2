// The egress gateway's per-connection front ends, started by EgressSession for each accepted
// client (internal to mp_egress_gateway): the HTTP proxy and the transparent HTTP listener
// (http_front.cc) and the transparent TLS listener (tls_front.cc). Single-threaded, on the
// session's io_context.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "egress/gateway_config.h"
#include "egress/relay.h"

namespace mp::egress {

class EgressSession;
struct ConnectionSlot;

// transparent=false: the HTTP proxy; true: the transparent :80 listener.
void StartHttpFront(std::shared_ptr<EgressSession> session, boost::asio::ip::tcp::socket client,
                    std::shared_ptr<ConnectionSlot> slot, bool transparent);
void StartTlsFront(std::shared_ptr<EgressSession> session, boost::asio::ip::tcp::socket client,
                   std::shared_ptr<ConnectionSlot> slot);

// A model endpoint (endpoint_front.cc). MakeEndpointTls builds the endpoint's TLS client
// context once per session: TLS >= 1.2, peer verification against `ca_file` (PEM; empty: the
// system CA store).
class EndpointTls;
Result<std::shared_ptr<EndpointTls>> MakeEndpointTls(const ModelEndpoint& endpoint,
                                                     const std::string& ca_file);
void StartEndpointFront(std::shared_ptr<EgressSession> session, boost::asio::ip::tcp::socket client,
                        std::shared_ptr<ConnectionSlot> slot, size_t endpoint,
                        std::shared_ptr<EndpointTls> tls);

// Relays an allowed connection: bytes are charged to the session's budget, `verdict` (with the
// byte counts) is reported when the relay ends, and Stop() can close it through `slot`.
void StartAccountedRelay(const std::shared_ptr<EgressSession>& session,
                         const std::shared_ptr<ConnectionSlot>& slot,
                         boost::asio::ip::tcp::socket client, boost::asio::ip::tcp::socket upstream,
                         RelayOptions options, Verdict verdict);

// Closes with a TCP reset (SO_LINGER 0): a refused transparent connection fails at once.
void ResetClose(boost::asio::ip::tcp::socket& socket);

// Answers `status phrase` with `text` as a plain-text body and "Connection: close", then shuts
// `client` down and closes it. `owner` (the front end that holds `client`) is kept alive until
// the write ends.
void AnswerAndClose(boost::asio::ip::tcp::socket& client, int status, std::string_view phrase,
                    const std::string& text, std::shared_ptr<void> owner);

}  // namespace mp::egress
