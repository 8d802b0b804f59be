// osprey synth: writes a Hugging Face model folder (or, with --format gguf, one GGUF file) with seeded random
// weights in the exact shape of a real model (benchmarks of production-size models without their weights).
// See formats/hf_synth.h and formats/gguf_synth.h; GGUF quantization uses the CPU backend's reference quantizers.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "backend/cpu/cpu_kernels.h"
#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf_synth.h"
#include "formats/hf_synth.h"

namespace osprey::cli {

namespace {

struct SynthArgs {
    std::string shape;
    std::string config;
    std::string dtype = "bf16";
    std::string tokenizer;
    uint64_t seed = 0;
    int64_t n_layers = 0;
    std::string out;
    std::string format;  // hf or gguf ("" : gguf when -o ends in .gguf)
    double max_shard_gb = 4.0;
    int threads = 0;
};

std::string join_shape_names() {
    std::string s;
    for (const std::string& n : formats::synth_shape_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
}

// A one-line progress bar on stderr, redrawn at most ~10 times a second.
class ProgressBar {
  public:
    void update(uint64_t done, uint64_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
        last_ = now;
        const double frac = total ? double(done) / double(total) : 1.0;
        const double secs = std::chrono::duration<double>(now - start_).count();
        const int width = 30, filled = int(frac * width);
        std::string bar(size_t(filled), '=');
        if (filled < width) bar += '>' + std::string(size_t(width - filled - 1), ' ');
        std::fprintf(stderr, "\r[%s] %5.1f%%  %.2f / %.2f GB  %.2f GB/s ", bar.c_str(), 100 * frac, double(done) / 1e9,
                     double(total) / 1e9, secs > 0 ? double(done) / 1e9 / secs : 0.0);
        if (done >= total) std::fputc('\n', stderr);
        std::fflush(stderr);
    }

  private:
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last_{};
};

bool ends_with_gguf(const std::string& s) { return s.size() > 5 && s.compare(s.size() - 5, 5, ".gguf") == 0; }

void run_synth_gguf(const SynthArgs& a) {
    formats::GgufSynthOptions o;
    o.shape = a.shape;
    o.config_path = a.config;
    const auto type = formats::gguf_file_type_from_name(a.dtype);
    if (!type) raise(ErrorCode::InvalidArgument, "--dtype '{}': use f32, f16, bf16, q8_0, q4_0 or q4_k_m", a.dtype);
    o.file_type = *type;
    o.tokenizer_dir = a.tokenizer;
    o.seed = a.seed;
    o.n_layers = a.n_layers;
    o.out_path = a.out;
    o.n_threads = a.threads;
    o.quantize = backend::cpu::quantize_row_ref;
    ProgressBar bar;
    if (::isatty(STDERR_FILENO)) o.on_progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };

    const auto t0 = std::chrono::steady_clock::now();
    const formats::GgufSynthResult r = formats::synthesize_gguf_model(o);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const formats::HfConfig& c = r.config;
    std::printf("wrote %s: GGUF %s, %lld layers, hidden %lld, %lld q / %lld kv heads, vocab %lld, %zu tensors, "
                "%.2f GB %s (seed %llu%s%s) in %.1f s\n",
                a.out.c_str(), r.arch.c_str(), (long long)c.num_hidden_layers, (long long)c.hidden_size,
                (long long)c.num_attention_heads, (long long)c.num_key_value_heads, (long long)c.vocab_size,
                r.n_tensors, double(r.file_bytes) / 1e9, std::string(formats::gguf_file_type_name(*type)).c_str(),
                (unsigned long long)a.seed, r.tokenizer_pre.empty() ? "" : ", tokenizer pre ",
                r.tokenizer_pre.c_str(), secs);
}

void run_synth(const SynthArgs& a) {
    const std::string format = a.format.empty() ? (ends_with_gguf(a.out) ? "gguf" : "hf") : a.format;
    if (format == "gguf") return run_synth_gguf(a);
    if (format != "hf") raise(ErrorCode::InvalidArgument, "--format '{}': use hf or gguf", a.format);
    formats::SynthOptions o;
    o.shape = a.shape;
    o.config_path = a.config;
    const auto dtype = dtype_from_name(a.dtype);
    if (!dtype || (*dtype != DType::BF16 && *dtype != DType::F16 && *dtype != DType::F32))
        raise(ErrorCode::InvalidArgument, "--dtype '{}': use bf16, f16 or f32", a.dtype);
    o.dtype = *dtype;
    o.tokenizer_dir = a.tokenizer;
    o.seed = a.seed;
    o.n_layers = a.n_layers;
    o.out_dir = a.out;
    if (!(a.max_shard_gb > 0)) raise(ErrorCode::InvalidArgument, "--max-shard-gb must be positive");
    o.max_shard_bytes = uint64_t(a.max_shard_gb * double(1ull << 30));
    o.n_threads = a.threads;
    ProgressBar bar;
    if (::isatty(STDERR_FILENO)) o.on_progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };

    const formats::SynthResult r = formats::synthesize_hf_model(o);
    const formats::HfConfig& c = r.config;
    std::printf("wrote %s: %s, %lld layers, hidden %lld, %lld q / %lld kv heads, vocab %lld, %.2f GB of %s weights "
                "(seed %llu)\n",
                a.out.c_str(), c.model_type.c_str(), (long long)c.num_hidden_layers, (long long)c.hidden_size,
                (long long)c.num_attention_heads, (long long)c.num_key_value_heads, (long long)c.vocab_size,
                double(r.weight_bytes) / 1e9, a.dtype.c_str(), (unsigned long long)a.seed);
    for (const std::string& f : r.files) std::printf("  %s\n", f.c_str());
}

}  // namespace

void register_synth_command(CLI::App& app) {
    auto args = std::make_shared<SynthArgs>();
    CLI::App* cmd = app.add_subcommand(
        "synth", "Write a Hugging Face model folder (or a GGUF file) with random weights in the exact shape of a real "
                 "model");
    cmd->footer("Example: osprey synth --shape llama-3.1-8b --dtype bf16 --tokenizer ../shared/data/tokenizers/llama3 "
                "-o /tmp/llama-3.1-8b-random\n         osprey synth --shape llama-3.1-8b --format gguf --dtype q4_k_m "
                "--tokenizer ../shared/data/tokenizers/llama3 -o /tmp/llama-3.1-8b-q4_k_m.gguf");
    auto* shape = cmd->add_option("--shape", args->shape, "Named model shape: " + join_shape_names());
    auto* config = cmd->add_option("--config", args->config, "A config.json (or a folder holding one) to take the shape from");
    shape->excludes(config);
    cmd->add_option("--dtype", args->dtype,
                    "Weight type: bf16, f16 or f32; for GGUF also q8_0, q4_0 or q4_k_m (llama.cpp's Q4_K_M mix)")
        ->capture_default_str();
    cmd->add_option("--format", args->format, "hf (a model folder) or gguf (one file); default: gguf when -o ends "
                    "in .gguf, else hf");
    cmd->add_option("--tokenizer", args->tokenizer, "Folder whose tokenizer.json / tokenizer_config.json are copied (GGUF: converted to "
                    "tokenizer.* metadata)");
    cmd->add_option("--seed", args->seed, "Random seed (the weights are a function of it)")->capture_default_str();
    cmd->add_option("--n-layers", args->n_layers, "Override num_hidden_layers (small test models)");
    cmd->add_option("-o,--output", args->out, "Output folder (GGUF: output file)")->required();
    cmd->add_option("--max-shard-gb", args->max_shard_gb, "Shard the weights when they pass this size (GiB)")
        ->capture_default_str();
    cmd->add_option("--threads", args->threads, "Generator / quantizer threads (0: all cores)");
    cmd->callback([args] {
        if (args->shape.empty() && args->config.empty())
            raise(ErrorCode::InvalidArgument, "synth: give --shape NAME ({}) or --config config.json", join_shape_names());
        run_synth(*args);
    });
}

}  // namespace osprey::cli
