// osprey tokenize: prints the token ids of a text (or a file) for a GGUF model/vocabulary or a tokenizer.json.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace osprey::cli {

namespace {

struct TokenizeOptions {
    std::string model;
    std::string file;
    std::string text;
    bool ids_only = false;
    bool no_bos = false;
    bool parse_special = false;
    bool show_count = false;
};

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) raise(ErrorCode::NotFound, "cannot open text file '{}'", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A piece for display: control characters and non-UTF-8 bytes escaped so each pair stays on one line.
std::string printable(const std::string& piece) {
    std::string out;
    for (unsigned char c : piece) {
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c == '\\') out += "\\\\";
        else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
        else out.push_back(static_cast<char>(c));
    }
    return out;
}

void run_tokenize(const TokenizeOptions& o) {
    if (!o.file.empty() && !o.text.empty())
        raise(ErrorCode::InvalidArgument, "give either TEXT or --file, not both");
    const std::string text = o.file.empty() ? o.text : read_text_file(o.file);
    const tokenizer::Tokenizer tk = tokenizer::Tokenizer::from_path(o.model);
    const std::vector<int32_t> ids = tk.encode(text, /*add_special=*/!o.no_bos, o.parse_special);
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) out.push_back(o.ids_only ? ' ' : '\n');
        if (o.ids_only) {
            out += std::to_string(ids[i]);
        } else {
            out += fmt::format("{:>7} '{}'", ids[i], printable(tk.token_to_piece(ids[i])));
        }
    }
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (o.show_count) std::fprintf(stderr, "%zu tokens\n", ids.size());
}

}  // namespace

void register_tokenize_command(CLI::App& app) {
    auto opts = std::make_shared<TokenizeOptions>();
    CLI::App* cmd = app.add_subcommand(
        "tokenize", "Print the token ids of a text. Default output: one 'id 'piece'' per line; --ids: ids only.");
    cmd->add_option("-m,--model", opts->model,
                    "a .gguf model or vocabulary, a tokenizer.json, or a folder with tokenizer.json")
        ->required();
    cmd->add_option("text", opts->text, "the text to tokenize (or use --file)");
    cmd->add_option("-f,--file", opts->file, "read the text from this file (bytes as they are)");
    cmd->add_flag("--ids", opts->ids_only, "print only the ids, space-separated, on one line");
    cmd->add_flag("--no-bos", opts->no_bos, "do not add BOS/EOS (the model's special-token rules)");
    cmd->add_flag("--parse-special", opts->parse_special,
                  "text that spells a special token (e.g. <|im_start|>) becomes that token");
    cmd->add_flag("--count", opts->show_count, "also print the number of tokens to stderr");
    cmd->callback([opts] { run_tokenize(*opts); });
}

}  // namespace osprey::cli
