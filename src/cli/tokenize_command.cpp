#include "cli/commands.h"

#include "core/error.h"

namespace osprey::cli {

void register_tokenize_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("tokenize", "tokenize (not yet implemented)");
    cmd->callback([] { raise(ErrorCode::Unsupported, "'tokenize' is not implemented yet"); });
}

}  // namespace osprey::cli
