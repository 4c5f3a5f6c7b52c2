// The `monkeyproof token` command's pure side (docs/cli.md "token"): its help text, its
// arguments turned into a TokenCommand, the POST /tokens body, and the table of GET /tokens.
// The requests themselves are made by RunToken (commands.cc). Runs in the CLI only. Pure
// functions over strings: no I/O, no exceptions escape; not shared between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "cli/args.h"
#include "common/result.h"

namespace mp::cli {

std::string_view TokenHelpText();

// `options` are the command's options as given (long name without "--", value), in order;
// `positionals[0]` is the action (create, ls, revoke). Returns the command, or the usage
// error's message.
std::variant<TokenCommand, std::string> BuildTokenCommand(
    const std::vector<std::pair<std::string, std::string>>& options,
    const std::vector<std::string>& positionals);

// "3600", "90s", "30m", "12h", "7d" as seconds; nullopt for anything else, zero and overflow.
std::optional<uint64_t> ParseTtl(std::string_view text);

// The JSON body of POST /tokens for `create`.
std::string MintBody(const TokenCommand& cmd);

// `token ls`: {"enabled":bool,"tokens":[…]} as ID SESSIONS RIGHTS PRESETS WORKSPACES EXPIRES
// CREATED-BY STATUS ("in 59m" or "expired"; "active" or "revoked"), or a line saying scoped tokens
// are off on the server.
Result<std::string> FormatTokenTable(std::string_view json_object, int64_t now_ms);

// What `token create` prints on stderr besides the token (on stdout): the id, the scope and
// the expiry, and that the token is not shown again.
Result<std::string> FormatMinted(std::string_view json_object);

}  // namespace mp::cli
