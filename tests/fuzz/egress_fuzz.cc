// libFuzzer target for the egress gateway's parsers (src/egress): host names, authorities,
// allow rules, TLS ClientHellos, address classes and proxy request targets. The first byte
// picks the parser: '0' NormalizeHostName, '1' ParseAuthority, '2' AllowList::Parse over
// '\n'-separated entries, '3' the ClientHello (whole, and every prefix up to 512 bytes),
// '4' ClassifyAddress, '5' ParseProxyTarget (method, target and Host split at '\n'),
// '6' ParseDnsQuery and BuildDnsAnswer, '7' DecodeHandover (the next byte modulo 14 is the
// number of descriptors that came with the record), '8' ParseUpstreamUrl.
// Besides "no crash, no sanitizer report", each branch checks an invariant and aborts when it
// fails: a canonical name normalises to itself and holds only [a-z0-9.-]; an authority prints
// as text that parses back to it; every accepted rule prints as an entry that parses back to
// it, permits what it names, and a wildcard never its own suffix; a found server name is
// canonical and a prefix never decides differently from the whole; ClassifyAddress and
// CanonicalAddress agree on what an address is; a proxy destination parses back from its text
// and a forwarded origin-form starts with '/'; a parsed DNS query's name is canonical or empty
// and every answer built for it parses with libresolv (ns_initparse) with the expected counts;
// an accepted handover record re-encodes to one that decodes to the same message, and no
// handover error quotes an endpoint's value; an upstream URL prints as text that parses back
// to it, with a canonical host and a path prefix that is empty or starts and does not end
// with '/'.
// Built with -fsanitize=fuzzer under the `fuzz` preset; the normal build replays
// tests/fuzz/corpus/egress (fuzz_replay.egress).
#include <arpa/nameser.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "egress/address_class.h"
#include "egress/allow_list.h"
#include "egress/client_hello.h"
#include "egress/dns_message.h"
#include "egress/handover.h"
#include "egress/host_name.h"
#include "egress/proxy_request.h"
#include "egress/upstream_url.h"

namespace {

namespace egress = mp::egress;

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "egress_fuzz: %s\n", what);
  std::abort();
}

void CheckCanonicalName(const std::string& name) {
  for (const char c : name) {
    Check((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.',
          "a canonical name holds a character outside [a-z0-9.-]");
  }
  auto again = egress::NormalizeHostName(name);
  Check(again && *again == name, "a canonical name does not normalise to itself");
}

void Names(std::string_view text) {
  auto name = egress::NormalizeHostName(text);
  if (name) CheckCanonicalName(*name);
}

void Authorities(std::string_view text) {
  auto a = egress::ParseAuthority(text);
  if (!a) return;
  Check(a->port != 0, "an authority with port 0");
  if (!a->is_address) CheckCanonicalName(a->host);
  auto again = egress::ParseAuthority(a->ToString());
  Check(again && *again == *a, "an authority does not parse back from its text");
}

void Rules(std::string_view text) {
  std::vector<std::string> entries;
  for (;;) {
    const size_t nl = text.find('\n');
    entries.emplace_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  auto list = egress::AllowList::Parse(entries);
  if (!list) return;
  for (const egress::AllowRule& rule : list->rules()) {
    auto again = egress::ParseAllowRule(rule.ToString());
    Check(again && *again == rule, "a rule does not parse back from its text");
    if (rule.kind == egress::AllowRule::Kind::kSubdomains) {
      Check(list->Permits({"x." + rule.host, false, rule.port}) || rule.host.size() > 251,
            "a wildcard rule does not permit a name under it");
      auto alone = egress::AllowList::Parse({rule.ToString()});
      Check(alone && !alone->Permits({rule.host, false, rule.port}),
            "a wildcard rule permits its own suffix");
    } else {
      Check(list->Permits({rule.host, rule.kind == egress::AllowRule::Kind::kAddress, rule.port}),
            "a rule does not permit what it names");
    }
  }
}

void Hellos(std::string_view bytes) {
  const egress::ClientHelloName whole = egress::ReadClientHelloName(bytes);
  if (whole.status == egress::ClientHelloName::Status::kFound) CheckCanonicalName(whole.name);
  for (size_t n = 0; n < bytes.size() && n < 512; ++n) {
    const egress::ClientHelloName part = egress::ReadClientHelloName(bytes.substr(0, n));
    if (part.status == egress::ClientHelloName::Status::kNeedMore) continue;
    Check(part.status == whole.status && part.name == whole.name,
          "a prefix decides differently from the whole");
  }
}

void Addresses(std::string_view text) {
  const bool is_address = egress::CanonicalAddress(text).has_value();
  Check(is_address == (egress::ClassifyAddress(text) != egress::AddressClass::kNotAnAddress),
        "ClassifyAddress and CanonicalAddress disagree about what an address is");
}

void ProxyTargets(std::string_view text) {
  const size_t first = text.find('\n');
  if (first == std::string_view::npos) return;
  const std::string_view method = text.substr(0, first);
  std::string_view rest = text.substr(first + 1);
  const size_t second = rest.find('\n');
  const std::string_view target = rest.substr(0, second);
  std::optional<std::string_view> host;
  if (second != std::string_view::npos) host = rest.substr(second + 1);
  auto got = egress::ParseProxyTarget(method, target, host);
  if (!got) return;
  auto again = egress::ParseAuthority(got->destination.ToString());
  Check(again && *again == got->destination, "a proxy destination does not parse back");
  Check(got->tunnel || (!got->origin_form.empty() && got->origin_form.front() == '/'),
        "a forwarded request's origin-form does not start with '/'");
}

void DnsQueries(std::string_view bytes) {
  auto q = egress::ParseDnsQuery(bytes);
  if (!q) return;
  if (!q->name.empty()) CheckCanonicalName(q->name);
  const std::string v4("\xc6\x12\x00\x01", 4);
  const std::string v6(16, '\x01');
  for (const egress::DnsRcode rcode : {egress::DnsRcode::kNoError, egress::DnsRcode::kNameError}) {
    for (const std::string* address : {&v4, &v6}) {
      const std::string answer = egress::BuildDnsAnswer(*q, rcode, *address, 5);
      ns_msg msg;
      Check(ns_initparse(reinterpret_cast<const unsigned char*>(answer.data()),
                         static_cast<int>(answer.size()), &msg) == 0,
            "libresolv cannot parse an answer");
      Check(ns_msg_id(msg) == q->id && ns_msg_count(msg, ns_s_qd) == 1,
            "an answer with another id or question count");
      const bool expect_record =
          rcode == egress::DnsRcode::kNoError && q->klass == 1 &&
          ((q->type == 1 && address == &v4) || (q->type == 28 && address == &v6));
      Check(ns_msg_count(msg, ns_s_an) == (expect_record ? 1 : 0), "unexpected answer count");
    }
  }
}

bool SameEndpoints(const std::vector<egress::HandoverEndpoint>& a,
                   const std::vector<egress::HandoverEndpoint>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].upstream != b[i].upstream || a[i].header != b[i].header || a[i].value != b[i].value) {
      return false;
    }
  }
  return true;
}

void Handovers(std::string_view text) {
  if (text.empty()) return;
  const size_t fds = static_cast<unsigned char>(text[0]) % (egress::kMaxHandoverFds + 2);
  auto m = egress::DecodeHandover(text.substr(1), fds);
  if (!m) return;
  Check(fds == (m->type == egress::HandoverMessage::Type::kOpen
                    ? egress::kHandoverFdCount + m->endpoints.size()
                    : 0),
        "a handover record accepted with the wrong number of descriptors");
  auto again = egress::DecodeHandover(egress::EncodeHandover(*m), fds);
  Check(again && again->type == m->type && again->session == m->session &&
            again->allow == m->allow && SameEndpoints(again->endpoints, m->endpoints) &&
            again->reports == m->reports,
        "a handover record does not survive re-encoding");
  // An accepted record with endpoints, broken in each field in turn: the error never quotes a
  // value (a credential).
  for (egress::HandoverEndpoint& e : m->endpoints) {
    const std::string secret = "SECRET-" + std::to_string(e.value.size());
    e.value = secret + "\r";
    auto bad = egress::DecodeHandover(egress::EncodeHandover(*m), fds);
    Check(!bad && bad.error().what.find(secret) == std::string::npos,
          "a handover error quotes an endpoint's value");
    e.value = secret;
    e.header = "Host";
    bad = egress::DecodeHandover(egress::EncodeHandover(*m), fds);
    Check(!bad && bad.error().what.find(secret) == std::string::npos,
          "a handover error quotes an endpoint's value");
    const std::string broken = egress::EncodeHandover(*m) + "x";
    bad = egress::DecodeHandover(broken, fds);
    Check(!bad && bad.error().what.find(secret) == std::string::npos,
          "a JSON error quotes an endpoint's value");
  }
}

void UpstreamUrls(std::string_view text) {
  auto url = egress::ParseUpstreamUrl(text);
  if (!url) return;
  Check(url->port != 0, "an upstream URL with port 0");
  if (!egress::CanonicalAddress(url->host)) CheckCanonicalName(url->host);
  Check(url->path_prefix.empty() ||
            (url->path_prefix.front() == '/' && url->path_prefix.back() != '/'),
        "an upstream path prefix that is not empty or /x");
  auto again = egress::ParseUpstreamUrl(egress::UpstreamUrlText(*url));
  Check(again && again->host == url->host && again->port == url->port &&
            again->path_prefix == url->path_prefix,
        "an upstream URL does not parse back from its text");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] & 0x0f) {
    case 0:
      Names(rest);
      break;
    case 1:
      Authorities(rest);
      break;
    case 2:
      Rules(rest);
      break;
    case 3:
      Hellos(rest);
      break;
    case 4:
      Addresses(rest);
      break;
    case 5:
      ProxyTargets(rest);
      break;
    case 6:
      DnsQueries(rest);
      break;
    case 7:
      Handovers(rest);
      break;
    case 8:
      UpstreamUrls(rest);
      break;
    default:
      break;
  }
  return 0;
}
