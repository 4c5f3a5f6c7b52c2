// monkeyproof: the command-line client of monkeyproof-api (docs/cli.md).
#include <unistd.h>

#include <exception>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/config.h"
#include "cli/terminal.h"
#include "common/version.h"

namespace {

using namespace mp::cli;  // NOLINT(google-build-using-namespace): main only

constexpr int kUsageStatus = 2;

int Main(const std::vector<std::string>& args) {
  ParseResult parsed = ParseArgs(args);
  if (const UsageError* usage = std::get_if<UsageError>(&parsed)) {
    const std::string hint = usage->command.empty() ? "" : usage->command + " ";
    (void)WriteAll(STDERR_FILENO, "monkeyproof: " + usage->message + "\nRun 'monkeyproof " + hint +
                                      "--help' for usage.\n");
    return kUsageStatus;
  }
  Invocation& invocation = std::get<Invocation>(parsed);
  if (const HelpCommand* help = std::get_if<HelpCommand>(&invocation.command)) {
    (void)WriteAll(STDOUT_FILENO, HelpText(help->topic));
    return 0;
  }

  Context ctx;
  ctx.json = invocation.global.json;
  const VersionCommand* version = std::get_if<VersionCommand>(&invocation.command);
  if (version != nullptr && version->client_only) return RunVersion(ctx, *version);

  mp::Result<ResolvedConfig> config = ResolveConfig(invocation.global, ProcessEnv());
  if (!config) return Fail(config.error().ToString());
  for (const std::string& warning : config->warnings) (void)Fail("warning: " + warning);
  ctx.config = std::move(*config);

  return std::visit(
      [&](const auto& cmd) -> int {
        using T = std::decay_t<decltype(cmd)>;
        if constexpr (std::is_same_v<T, RunCommand>) return RunRun(ctx, cmd);
        if constexpr (std::is_same_v<T, AttachCommand>) return RunAttach(ctx, cmd);
        if constexpr (std::is_same_v<T, LsCommand>) return RunLs(ctx, cmd);
        if constexpr (std::is_same_v<T, ShowCommand>) return RunShow(ctx, cmd);
        if constexpr (std::is_same_v<T, LogsCommand>) return RunLogs(ctx, cmd);
        if constexpr (std::is_same_v<T, SendCommand>) return RunSend(ctx, cmd);
        if constexpr (std::is_same_v<T, KillCommand>) return RunKill(ctx, cmd);
        if constexpr (std::is_same_v<T, PoliciesCommand>) return RunPolicies(ctx);
        if constexpr (std::is_same_v<T, VersionCommand>) return RunVersion(ctx, cmd);
        if constexpr (std::is_same_v<T, TokenCommand>) return RunToken(ctx, cmd);
        return 0;  // HelpCommand, handled above
      },
      invocation.command);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    RestoreTerminal();
    return Fail(std::string("internal error: ") + e.what());
  }
}
