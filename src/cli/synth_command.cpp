#include "cli/commands.h"

#include "core/error.h"

namespace osprey::cli {

void register_synth_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("synth", "synth (not yet implemented)");
    cmd->callback([] { raise(ErrorCode::Unsupported, "'synth' is not implemented yet"); });
}

}  // namespace osprey::cli
