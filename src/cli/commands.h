// Each subcommand lives in its own file and registers itself on the root CLI::App.
// A registered command's callback throws osprey::Error on bad input; main() maps it to a message and exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace osprey::cli {

void register_run_command(CLI::App& app);
void register_inspect_command(CLI::App& app);
void register_tokenize_command(CLI::App& app);
void register_synth_command(CLI::App& app);
void register_serve_command(CLI::App& app);
void register_bench_command(CLI::App& app);

}  // namespace osprey::cli
