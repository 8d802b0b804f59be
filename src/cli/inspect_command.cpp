#include "cli/commands.h"

#include "core/error.h"

namespace osprey::cli {

void register_inspect_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("inspect", "inspect (not yet implemented)");
    cmd->callback([] { raise(ErrorCode::Unsupported, "'inspect' is not implemented yet"); });
}

}  // namespace osprey::cli
