// The TLS server context of monkeyproof-api (http/tls.h) on its own: clear errors for
// unreadable, world-readable, mismatched or malformed files; the protocol floor, the cipher
// list, no compression, no renegotiation; client certificates and the principal taken from
// them. Handshakes run over real loopback TCP against OneShotTlsServer (tls_test_util.h),
// with a server without our settings as the control where a refusal is tested. Any user.
#include "http/tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <string>

#include "temp_dir.h"
#include "test_pki.h"
#include "tls_test_util.h"

namespace mp::http {
namespace {

using test::CertSpec;
using test::ClientContext;
using test::ClientOptions;
using test::OneShotTlsServer;
using test::PemPair;
using test::TlsClient;

struct Pki {
  PemPair ca = test::MakeSelfSigned({{"test CA"}, true, "", 1});
  PemPair server = test::MakeSigned({{"server-1"}, false, "IP:127.0.0.1", 2}, ca);
  PemPair client = test::MakeSigned({{"machine-1"}, false, "", 3}, ca);
  PemPair two_cns = test::MakeSigned({{"machine-1", "admin"}, false, "", 4}, ca);
  PemPair other_ca = test::MakeSelfSigned({{"other CA"}, true, "", 5});
  PemPair foreign_client = test::MakeSigned({{"machine-1"}, false, "", 6}, other_ca);
};

const Pki& TestPki() {
  static const Pki pki;
  return pki;
}

class TlsContextTest : public ::testing::Test {
 protected:
  TlsConfig Files(ClientCerts client_certs = ClientCerts::kNone) {
    TlsConfig c;
    c.listen = {{"127.0.0.1", 0}};
    c.cert_file = dir_.Write("cert.pem", TestPki().server.cert);
    c.key_file = dir_.Write("key.pem", TestPki().server.key, 0600);
    if (client_certs != ClientCerts::kNone) {
      c.client_ca_file = dir_.Write("client-ca.pem", TestPki().ca.cert);
      c.client_certs = client_certs;
    }
    return c;
  }
  std::shared_ptr<boost::asio::ssl::context> MustMake(const TlsConfig& c) {
    auto r = MakeServerTlsContext(c);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r.has_value() ? *r : nullptr;
  }
  std::string MakeError(const TlsConfig& c) {
    auto r = MakeServerTlsContext(c);
    EXPECT_FALSE(r.has_value());
    return r.has_value() ? "" : r.error().ToString();
  }
  // A handshake of a client with `options` against a server with `context`.
  OneShotTlsServer::Seen Handshake(std::shared_ptr<boost::asio::ssl::context> context,
                                   const ClientOptions& options,
                                   boost::beast::error_code* client_error = nullptr) {
    OneShotTlsServer server(std::move(context));
    TlsClient client(server.port(), ClientContext(options));
    if (client_error != nullptr) *client_error = client.handshake_error();
    // TLS 1.3: the client's handshake ends before the server has looked at its certificate;
    // one round trip makes the server's verdict reach the client.
    if (!client.handshake_error()) {
      boost::beast::error_code ec;
      boost::asio::write(client.stream(), boost::asio::buffer("x", 1), ec);
    }
    return server.Wait();
  }

  test::TempDir dir_{"mp-tls-context-test"};
};

TEST_F(TlsContextTest, GoodFilesMakeAContextWithTheProtocolSettings) {
  auto ctx = MustMake(Files());
  ASSERT_NE(ctx, nullptr);
  SSL_CTX* native = ctx->native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(native), TLS1_2_VERSION);
  const uint64_t options = SSL_CTX_get_options(native);
  EXPECT_NE(options & SSL_OP_NO_COMPRESSION, 0u);
  EXPECT_NE(options & SSL_OP_NO_RENEGOTIATION, 0u);
  EXPECT_EQ(SSL_CTX_get_verify_mode(native), SSL_VERIFY_NONE);
}

TEST_F(TlsContextTest, AMissingCertificateNamesTheKeyTheFileAndTheErrno) {
  TlsConfig c = Files();
  c.cert_file = dir_.path() + "/absent.pem";
  const std::string e = MakeError(c);
  EXPECT_NE(e.find("tls_cert \"" + c.cert_file + "\""), std::string::npos) << e;
  EXPECT_NE(e.find("ENOENT"), std::string::npos) << e;
}

TEST_F(TlsContextTest, AKeyReadableByOthersIsRefused) {
  TlsConfig c = Files();
  ASSERT_EQ(::chmod(c.key_file.c_str(), 0644), 0);
  const std::string e = MakeError(c);
  EXPECT_NE(e.find("tls_key \"" + c.key_file + "\" is readable by others (mode 0644)"),
            std::string::npos)
      << e;
  ASSERT_EQ(::chmod(c.key_file.c_str(), 0640), 0);  // control: group-readable is fine
  EXPECT_NE(MustMake(c), nullptr);
}

TEST_F(TlsContextTest, AKeyOfAnotherCertificateIsRefused) {
  TlsConfig c = Files();
  c.key_file = dir_.Write("other-key.pem", TestPki().client.key, 0600);
  const std::string e = MakeError(c);
  EXPECT_NE(e.find("tls_key \"" + c.key_file + "\""), std::string::npos) << e;
  EXPECT_NE(e.find("does not belong to tls_cert \"" + c.cert_file + "\""), std::string::npos) << e;
}

TEST_F(TlsContextTest, MalformedFilesAreRefused) {
  TlsConfig c = Files();
  c.cert_file = dir_.Write("garbage.pem", "not a certificate\n");
  EXPECT_NE(MakeError(c).find("is not a PEM certificate chain"), std::string::npos);
  c = Files();
  c.key_file = dir_.Write("garbage-key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n", 0600);
  EXPECT_NE(MakeError(c).find("is not an unencrypted PEM private key"), std::string::npos);
  c = Files(ClientCerts::kRequired);
  c.client_ca_file = dir_.Write("garbage-ca.pem", "nothing\n");
  EXPECT_NE(MakeError(c).find("tls_client_ca \"" + c.client_ca_file + "\" holds no PEM CA"),
            std::string::npos);
}

TEST_F(TlsContextTest, Tls11IsRefusedWhereAServerWithoutTheFloorAcceptsIt) {
  const ClientOptions tls11{TestPki().ca.cert, std::nullopt, TLS1_1_VERSION, TLS1_1_VERSION, true};
  boost::beast::error_code client_error;
  const auto seen = Handshake(MustMake(Files()), tls11, &client_error);
  EXPECT_FALSE(seen.handshake_ok);
  EXPECT_TRUE(client_error) << "a TLS 1.1 client completed a handshake";

  // Control: the same client against a server that allows TLS 1.1 gets through, so the
  // refusal above is the floor's doing, not the client's inability.
  auto legacy = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  SSL_CTX_set_cipher_list(legacy->native_handle(), "DEFAULT@SECLEVEL=0");
  SSL_CTX_set_min_proto_version(legacy->native_handle(), TLS1_VERSION);
  legacy->use_certificate_chain(boost::asio::buffer(TestPki().server.cert));
  legacy->use_private_key(boost::asio::buffer(TestPki().server.key),
                          boost::asio::ssl::context::pem);
  const auto control = Handshake(legacy, tls11, &client_error);
  EXPECT_TRUE(control.handshake_ok) << control.error;
  EXPECT_FALSE(client_error) << client_error.message();
}

TEST_F(TlsContextTest, Tls12NegotiatesOneOfTheListedCiphers) {
  OneShotTlsServer server(MustMake(Files()));
  TlsClient client(server.port(), ClientContext({TestPki().ca.cert, std::nullopt, TLS1_2_VERSION,
                                                 TLS1_2_VERSION}));
  ASSERT_FALSE(client.handshake_error()) << client.handshake_error().message();
  EXPECT_EQ(client.Protocol(), "TLSv1.2");
  EXPECT_NE(std::string(kTls12Ciphers).find(client.Cipher()), std::string::npos) << client.Cipher();
  EXPECT_TRUE(server.Wait().handshake_ok);
}

// A TLS 1.2 client asks to renegotiate after the handshake: refused; the control is a server
// that allows client renegotiation, where the same request succeeds.
TEST_F(TlsContextTest, ClientRenegotiationIsRefused) {
  auto renegotiate = [](std::shared_ptr<boost::asio::ssl::context> context) {
    OneShotTlsServer server(std::move(context));
    TlsClient client(server.port(), ClientContext({TestPki().ca.cert, std::nullopt, TLS1_2_VERSION,
                                                   TLS1_2_VERSION}));
    EXPECT_FALSE(client.handshake_error());
    EXPECT_TRUE(server.Wait().handshake_ok);
    boost::beast::error_code ec;
    boost::asio::write(client.stream(), boost::asio::buffer("ping", 4), ec);
    char echo[4];
    boost::asio::read(client.stream(), boost::asio::buffer(echo), ec);  // the server is reading
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(SSL_renegotiate(client.stream().native_handle()), 1);
    client.stream().handshake(boost::asio::ssl::stream_base::client, ec);
    if (!ec) boost::asio::write(client.stream(), boost::asio::buffer("ping", 4), ec);
    if (!ec) boost::asio::read(client.stream(), boost::asio::buffer(echo), ec);
    return ec;
  };
  EXPECT_TRUE(renegotiate(MustMake(Files()))) << "the server renegotiated";

  auto lenient = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  SSL_CTX_set_options(lenient->native_handle(), SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
  lenient->use_certificate_chain(boost::asio::buffer(TestPki().server.cert));
  lenient->use_private_key(boost::asio::buffer(TestPki().server.key),
                           boost::asio::ssl::context::pem);
  const auto control = renegotiate(lenient);
  EXPECT_FALSE(control) << "control: renegotiation failed without the refusal: "
                        << control.message();
}

TEST_F(TlsContextTest, RequiredClientCertificates) {
  auto ctx = MustMake(Files(ClientCerts::kRequired));
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx->native_handle()),
            SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  const auto none = Handshake(ctx, {TestPki().ca.cert});
  EXPECT_FALSE(none.handshake_ok) << "no client certificate, yet a handshake";
  const auto foreign = Handshake(ctx, {TestPki().ca.cert, TestPki().foreign_client});
  EXPECT_FALSE(foreign.handshake_ok) << "a certificate of another CA was accepted";
  const auto good = Handshake(ctx, {TestPki().ca.cert, TestPki().client});
  EXPECT_TRUE(good.handshake_ok) << good.error;
  EXPECT_EQ(good.principal, "machine-1");
}

TEST_F(TlsContextTest, OptionalClientCertificates) {
  auto ctx = MustMake(Files(ClientCerts::kOptional));
  const auto none = Handshake(ctx, {TestPki().ca.cert});
  EXPECT_TRUE(none.handshake_ok) << none.error;
  EXPECT_EQ(none.principal, std::nullopt);
  const auto foreign = Handshake(ctx, {TestPki().ca.cert, TestPki().foreign_client});
  EXPECT_FALSE(foreign.handshake_ok) << "a certificate that does not verify was accepted";
  const auto good = Handshake(ctx, {TestPki().ca.cert, TestPki().client});
  EXPECT_TRUE(good.handshake_ok) << good.error;
  EXPECT_EQ(good.principal, "machine-1");
}

TEST_F(TlsContextTest, APrincipalNeedsExactlyOneCommonName) {
  auto ctx = MustMake(Files(ClientCerts::kRequired));
  const auto two = Handshake(ctx, {TestPki().ca.cert, TestPki().two_cns});
  EXPECT_TRUE(two.handshake_ok) << two.error;  // a valid certificate, but no principal
  EXPECT_EQ(two.principal, std::nullopt);
  // Without client verification a certificate is never a principal.
  const auto unverified = Handshake(MustMake(Files()), {TestPki().ca.cert, TestPki().client});
  EXPECT_TRUE(unverified.handshake_ok) << unverified.error;
  EXPECT_EQ(unverified.principal, std::nullopt);
}

}  // namespace
}  // namespace mp::http
