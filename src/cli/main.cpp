// osprey: one binary, one subcommand per file (src/cli/*_command.cpp).
#include <cstdio>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "core/error.h"

namespace {

std::string version_text() {
    std::string backends = "cpu";
#ifdef OSPREY_WITH_CUDA
    backends += ", cuda";
#endif
    return std::string("osprey ") + OSPREY_VERSION + " (backends: " + backends + ")";
}

int exit_code_for(osprey::ErrorCode code) {
    switch (code) {
        case osprey::ErrorCode::InvalidArgument: return 2;
        case osprey::ErrorCode::ContextOverflow: return 2;
        case osprey::ErrorCode::NotFound: return 3;
        case osprey::ErrorCode::InvalidFile: return 4;
        case osprey::ErrorCode::Unsupported: return 5;
        case osprey::ErrorCode::OutOfMemory: return 6;
        case osprey::ErrorCode::Io: return 7;
        case osprey::ErrorCode::Internal: return 70;
    }
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Osprey: LLM inference engine and server"};
    app.set_version_flag("--version", version_text());
    app.require_subcommand(1);
    osprey::cli::register_run_command(app);
    osprey::cli::register_inspect_command(app);
    osprey::cli::register_tokenize_command(app);
    osprey::cli::register_synth_command(app);
    osprey::cli::register_serve_command(app);
    osprey::cli::register_bench_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const osprey::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return exit_code_for(e.code());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
