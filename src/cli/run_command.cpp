#include "cli/commands.h"

#include "core/error.h"

namespace osprey::cli {

void register_run_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("run", "run (not yet implemented)");
    cmd->callback([] { raise(ErrorCode::Unsupported, "'run' is not implemented yet"); });
}

}  // namespace osprey::cli
