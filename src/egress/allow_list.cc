// Egress allow rules. See allow_list.h.
#include "egress/allow_list.h"

#include <algorithm>

#include "common/json_strict.h"

namespace mp::egress {

using wire::QuoteForError;
namespace {

bool NameMatches(const AllowRule& rule, std::string_view name) {
  switch (rule.kind) {
    case AllowRule::Kind::kName:
      return name == rule.host;
    case AllowRule::Kind::kSubdomains:
      return name.size() > rule.host.size() + 1 && name.ends_with(rule.host) &&
             name[name.size() - rule.host.size() - 1] == '.';
    case AllowRule::Kind::kAddress:
      return false;
  }
  return false;
}

}  // namespace

std::string AllowRule::ToString() const {
  switch (kind) {
    case Kind::kName:
      return Authority{host, false, port}.ToString();
    case Kind::kSubdomains:
      return "*." + Authority{host, false, port}.ToString();
    case Kind::kAddress:
      return Authority{host, true, port}.ToString();
  }
  return {};
}

Result<AllowRule> ParseAllowRule(std::string_view entry) {
  const std::string quoted = QuoteForError(entry);
  if (entry == "*" || entry.starts_with("*:")) {
    return PlainError(quoted +
                      " would allow every host: name each host, or use the \"host\" network "
                      "mode");
  }
  bool wildcard = false;
  std::string_view rest = entry;
  if (rest.starts_with("*.")) {
    wildcard = true;
    rest.remove_prefix(2);
  }
  if (rest.find('*') != std::string_view::npos) {
    return PlainError(quoted +
                      ": '*' may only stand for the whole first label, as in "
                      "\"*.example.com:443\"");
  }
  Result<Authority> authority = ParseAuthority(rest);
  if (!authority) {
    return PlainError(quoted + ": " + authority.error().what +
                      " (write \"host:port\", \"*.domain:port\" or \"[v6-address]:port\")");
  }
  AllowRule rule;
  rule.host = std::move(authority->host);
  rule.port = authority->port;
  if (authority->is_address) {
    if (wildcard) return PlainError(quoted + ": '*.' cannot come before an address");
    rule.kind = AllowRule::Kind::kAddress;
    return rule;
  }
  if (wildcard) {
    if (rule.host.find('.') == std::string::npos) {
      return PlainError(quoted +
                        " would allow a whole top-level domain: name a domain with at least "
                        "two labels after \"*.\"");
    }
    rule.kind = AllowRule::Kind::kSubdomains;
  }
  return rule;
}

Result<AllowList> AllowList::Parse(const std::vector<std::string>& entries) {
  AllowList list;
  std::string problems;
  for (size_t i = 0; i < entries.size(); ++i) {
    Result<AllowRule> rule = ParseAllowRule(entries[i]);
    if (!rule) {
      if (!problems.empty()) problems += "; ";
      problems += "allow[" + std::to_string(i) + "]: " + rule.error().what;
      continue;
    }
    if (std::find(list.rules_.begin(), list.rules_.end(), *rule) == list.rules_.end()) {
      list.rules_.push_back(std::move(*rule));
    }
  }
  if (!problems.empty()) return CodedError(ErrorCode::kBadRequest, problems);
  return list;
}

bool AllowList::Permits(const Authority& destination) const {
  return std::any_of(rules_.begin(), rules_.end(), [&](const AllowRule& rule) {
    if (rule.port != destination.port) return false;
    if (destination.is_address) {
      return rule.kind == AllowRule::Kind::kAddress && rule.host == destination.host;
    }
    return NameMatches(rule, destination.host);
  });
}

bool AllowList::PermitsName(std::string_view name) const {
  return std::any_of(rules_.begin(), rules_.end(),
                     [&](const AllowRule& rule) { return NameMatches(rule, name); });
}

}  // namespace mp::egress
