// osprey run: load a model, answer one prompt, stream the text to stdout and the speeds to stderr.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/device_option.h"
#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "core/error.h"
#include "engine/generator.h"
#include "engine/model_loader.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/incremental_decoder.h"

namespace osprey::cli {

namespace {

struct RunOptions {
    std::string model;
    std::string prompt;
    std::string prompt_file;
    int prompt_tokens = 0;
    std::string stats_json;
    std::string system;
    int n_predict = 128;
    bool chat = false;
    bool no_bos = false;
    int threads = 0;
    std::string device = "auto";
    std::string kv_cache_dtype = "auto";
    int ctx = 0;
    int max_num_batched_tokens = 0;  // prompt tokens per forward pass; 0: 512 on the CPU, 8192 on a GPU
    int warmup = -1;                 // untimed runs first; -1: 1 on a GPU, 0 on the CPU
    engine::SamplingParams sampling;
    int64_t seed = -1;
    std::string score_out;
    bool enforce_eager = false;
};

// Teacher-forced scoring of `tokens`: for every position, the model's top-1 next token and the log-probability
// of the actual next token, written as JSON (with the token ids, so another implementation can score the same).
void write_scores(engine::Generator& gen, backend::Backend& be, std::span<const int32_t> tokens, const std::string& out) {
    std::vector<int32_t> top1;
    std::vector<double> logprob_next;
    std::vector<float> host;
    gen.score(tokens, [&](int first, const Tensor& logits) {
        const int64_t rows = logits.rows(), V = logits.cols();
        host.resize(size_t(rows * V));
        if (logits.device == Device::Cpu) std::memcpy(host.data(), logits.data, host.size() * 4);
        else be.copy_to_host(host.data(), logits.data, host.size() * 4);
        for (int64_t r = 0; r < rows; r++) {
            const float* l = host.data() + r * V;
            const int64_t best = std::max_element(l, l + V) - l;
            double sum = 0;
            for (int64_t v = 0; v < V; v++) sum += std::exp(double(l[v]) - double(l[best]));
            top1.push_back(int32_t(best));
            const int64_t pos = first + r;
            if (pos + 1 < int64_t(tokens.size()))
                logprob_next.push_back(double(l[tokens[size_t(pos + 1)]]) - double(l[best]) - std::log(sum));
        }
    });
    nlohmann::json j = {{"tokens", std::vector<int32_t>(tokens.begin(), tokens.end())},
                        {"top1", top1},
                        {"logprob_next", logprob_next},
                        {"backend", be.name()}};
    std::ofstream f(out);
    if (!f) raise(ErrorCode::InvalidArgument, "--score-out {}: cannot write", out);
    f << j.dump() << "\n";
}

void run(const RunOptions& o) {
    const std::string path = o.model.empty() ? engine::default_model_path() : o.model;
    auto backend = make_backend(o.device, o.threads);
    engine::LoadOptions lo;
    lo.enforce_eager = o.enforce_eager;
    ProgressBar bar("loading", isatty(STDOUT_FILENO));
    lo.on_progress = [&](double f) { bar.update(f); };
    engine::LoadedModel m = engine::load_model(path, *backend, lo);
    bar.finish();
    const tokenizer::Tokenizer& tok = *m.tokenizer;

    std::string text = o.prompt;
    if (!o.prompt_file.empty()) {
        std::ifstream f(o.prompt_file, std::ios::binary);
        if (!f) raise(ErrorCode::NotFound, "{}: cannot read the prompt file", o.prompt_file);
        text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    if (text.empty()) raise(ErrorCode::InvalidArgument, "the prompt is empty (give -p or -f)");
    bool parse_special = false;
    if (o.chat) {
        if (tok.chat_template().empty()) raise(ErrorCode::InvalidArgument, "{}: the model has no chat template", path);
        tokenizer::ChatTemplate tmpl(tok.chat_template(), tok.bos_text(), tok.eos_text());
        nlohmann::json messages = nlohmann::json::array();
        if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
        messages.push_back({{"role", "user"}, {"content", o.prompt}});
        text = tmpl.render(messages, true);
        parse_special = true;
    }
    // A chat template writes BOS itself when the model wants one.
    const bool add_special = !o.no_bos && !o.chat;
    std::vector<int32_t> prompt = tok.encode(text, add_special, parse_special);
    if (o.chat && tok.add_bos() && !o.no_bos && (prompt.empty() || prompt[0] != tok.bos_id()))
        prompt.insert(prompt.begin(), tok.bos_id());

    if (o.prompt_tokens > 0) {
        if (int(prompt.size()) < o.prompt_tokens)
            raise(ErrorCode::InvalidArgument, "the prompt has {} tokens, fewer than --prompt-tokens {}", prompt.size(),
                  o.prompt_tokens);
        prompt.resize(size_t(o.prompt_tokens));
    }
    const int chunk = o.max_num_batched_tokens > 0 ? o.max_num_batched_tokens
                                                   : engine::default_max_num_batched_tokens(backend->device());
    if (!o.score_out.empty()) {
        engine::Generator scorer(*m.model, int(prompt.size()), 16, chunk, parse_kv_cache_dtype(o.kv_cache_dtype));
        write_scores(scorer, *backend, prompt, o.score_out);
        std::fprintf(stderr, "[%s] scored %zu tokens -> %s\n", backend->name().c_str(), prompt.size(),
                     o.score_out.c_str());
        return;
    }
    engine::SamplingParams sp = o.sampling;
    sp.max_tokens = o.n_predict;
    const int ctx = o.ctx > 0 ? o.ctx : std::min(m.config.max_context, int(prompt.size()) + o.n_predict);
    engine::Generator gen(*m.model, ctx, 16, chunk, parse_kv_cache_dtype(o.kv_cache_dtype));
    const uint64_t seed = o.seed >= 0 ? uint64_t(o.seed) : std::random_device{}();
    std::unordered_set<int32_t> eos(tok.eos_ids().begin(), tok.eos_ids().end());
    // On a GPU the first passes load each kernel (lazy module loading) and capture the decode graphs of each context
    // bucket: an untimed run of the same shape first, as benchmark tools do, so the figures are the steady state.
    const int warmup = o.warmup >= 0 ? o.warmup : backend->device() == Device::Cpu ? 0 : 1;
    double warmup_seconds = 0;
    for (int i = 0; i < warmup; i++) {
        const engine::GenerationStats w =
            gen.generate(prompt, sp, seed, eos, [](const engine::SampledToken&) { return true; });
        warmup_seconds += w.prefill_seconds + w.decode_seconds;
    }
    if (warmup > 0) std::fprintf(stderr, "[%s] warm-up: %d untimed run(s), %.2f s\n", backend->name().c_str(), warmup,
                                 warmup_seconds);
    tokenizer::IncrementalDecoder decoder(tok);
    const engine::GenerationStats st = gen.generate(prompt, sp, seed, eos, [&](const engine::SampledToken& t) {
        if (tok.is_eos(t.token)) return true;
        const std::string piece = decoder.push(t.token);
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    });
    const std::string rest = decoder.flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "\n[%s] load %.2f s | prompt %d tokens, %.1f tokens/s | decode %d tokens, %.1f tokens/s | %s\n",
                 backend->name().c_str(), m.load_seconds, st.n_prompt,
                 st.prefill_seconds > 0 ? st.n_prompt / st.prefill_seconds : 0.0, st.n_generated,
                 st.decode_seconds > 0 && st.n_generated > 1 ? (st.n_generated - 1) / st.decode_seconds : 0.0,
                 st.finish_reason);
    if (!o.stats_json.empty()) {
        nlohmann::json j = {
            {"model", path},
            {"backend", backend->name()},
            {"load_seconds", m.load_seconds},
            {"warmup_runs", warmup},
            {"warmup_seconds", warmup_seconds},
            {"n_prompt", st.n_prompt},
            {"prompt_seconds", st.prefill_seconds},
            {"prompt_tokens_per_second", st.prefill_seconds > 0 ? st.n_prompt / st.prefill_seconds : 0.0},
            {"n_generated", st.n_generated},
            {"decode_seconds", st.decode_seconds},
            {"decode_tokens_per_second",
             st.decode_seconds > 0 && st.n_generated > 1 ? (st.n_generated - 1) / st.decode_seconds : 0.0},
        };
        std::ofstream(o.stats_json) << j.dump(2) << "\n";
    }
}

}  // namespace

void register_run_command(CLI::App& app) {
    auto o = std::make_shared<RunOptions>();
    o->sampling.temperature = 0.0f;
    CLI::App* cmd = app.add_subcommand("run", "Answer one prompt: streams text to stdout, speeds to stderr");
    cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder (default: SmolLM2-135M-Instruct Q4_1)");
    cmd->add_option("-p,--prompt", o->prompt, "The prompt");
    cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from a file");
    cmd->add_option("--prompt-tokens", o->prompt_tokens, "Cut the tokenized prompt to exactly N tokens (benchmarks)");
    cmd->add_option("--stats-json", o->stats_json, "Write load time and speeds as JSON to this file");
    cmd->add_option("--score-out", o->score_out,
                    "Teacher-force the prompt instead of generating: write each position's top-1 token and the "
                    "log-probability of the next token as JSON");
    cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->check(CLI::Range(1, 1 << 20));
    cmd->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template");
    cmd->add_option("--system", o->system, "System message (with --chat)");
    cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS");
    cmd->add_option("-t,--threads", o->threads, "CPU threads (default: one per core)");
    cmd->add_option("--device", o->device, kDeviceHelp);
    cmd->add_option("-c,--ctx-size", o->ctx, "KV cache size in tokens (default: prompt + n-predict)");
    cmd->add_option("--warmup", o->warmup, "Untimed runs of the same prompt first (default: 1 on a GPU, 0 on the CPU)")
        ->check(CLI::Range(0, 100));
    cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens,
                    "Prompt tokens per forward pass (prefill chunk; default 512 on the CPU, 8192 on a GPU)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_option("--kv-cache-dtype", o->kv_cache_dtype, kKvCacheDtypeHelp)->capture_default_str();
    cmd->add_flag("--enforce-eager", o->enforce_eager, kEnforceEagerHelp);
    cmd->add_option("--temp,--temperature", o->sampling.temperature, "Temperature (0 = greedy, the default)");
    cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)");
    cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)");
    cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)");
    cmd->add_option("--repeat-penalty", o->sampling.repetition_penalty, "Repetition penalty (1 = off)");
    cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "Presence penalty");
    cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "Frequency penalty");
    cmd->add_option("--seed", o->seed, "Sampling seed (default: random)");
    cmd->add_flag("--ignore-eos", o->sampling.ignore_eos, "Keep generating after EOS");
    cmd->callback([o] { run(*o); });
}

}  // namespace osprey::cli
