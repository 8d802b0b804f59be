#include "cli/commands.h"

#include "core/error.h"

namespace osprey::cli {

void register_serve_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (not yet implemented)");
    cmd->callback([] { raise(ErrorCode::Unsupported, "'serve' is not implemented yet"); });
}

}  // namespace osprey::cli
