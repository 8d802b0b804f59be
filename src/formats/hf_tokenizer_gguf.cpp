#include "formats/hf_tokenizer_gguf.h"

#include <filesystem>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/json_util.h"

namespace osprey::formats {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// GGUF token types (llama.cpp's llama_token_type).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string token_string(const json& j) {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
    return "";
}

// llama.cpp's converter marks added tokens that look special as control tokens even when "special" is false.
bool looks_special(const std::string& t) {
    auto wrapped = [&](const char* a, const char* b) {
        const std::string sa(a), sb(b);
        return t.size() >= sa.size() + sb.size() && t.compare(0, sa.size(), sa) == 0 &&
               t.compare(t.size() - sb.size(), sb.size(), sb) == 0;
    };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
           wrapped("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || wrapped("<unused", ">");
}

bool is_type(const json& j, const char* type) { return j.is_object() && j.value("type", "") == type; }

// The tokenizer.ggml.pre name whose regexes (Tokenizer::from_gguf's table) split text as this pre-tokenizer does.
std::string pre_name(const json& pre, const std::string& path) {
    std::vector<json> steps;
    if (is_type(pre, "Sequence") && pre.contains("pretokenizers") && pre["pretokenizers"].is_array())
        for (const json& s : pre["pretokenizers"]) steps.push_back(s);
    else if (pre.is_object())
        steps.push_back(pre);
    auto byte_level = [](const json& s, bool use_regex) {
        return is_type(s, "ByteLevel") && s.value("use_regex", true) == use_regex && !s.value("add_prefix_space", false);
    };
    if (steps.size() == 2 && is_type(steps[0], "Split") && byte_level(steps[1], false) &&
        steps[0].value("behavior", "") == "Isolated" && !steps[0].value("invert", false) &&
        steps[0].contains("pattern") && steps[0]["pattern"].is_object()) {
        const std::string re = steps[0]["pattern"].value("Regex", "");
        if (re == kLlama3Regex) return "llama-bpe";
        if (re == kQwen2Regex) return "qwen2";
    }
    if (steps.size() == 2 && is_type(steps[0], "Digits") && steps[0].value("individual_digits", false) &&
        byte_level(steps[1], true))
        return "smollm";
    if (steps.size() == 1 && byte_level(steps[0], true)) return "gpt-2";
    raise(ErrorCode::Unsupported, "{}: pre_tokenizer {} has no GGUF equivalent Osprey knows (llama-bpe, qwen2, smollm, "
          "gpt-2)", path, pre.dump().substr(0, 300));
}

}  // namespace

GgufTokenizerSummary add_hf_tokenizer_to_gguf(GgufWriter& w, const std::string& dir, int64_t n_vocab,
                                              const std::vector<int64_t>& eos_ids) {
    const fs::path tpath = fs::path(dir) / "tokenizer.json";
    const fs::path cpath = fs::path(dir) / "tokenizer_config.json";
    std::error_code ec;
    if (!fs::exists(tpath, ec)) raise(ErrorCode::NotFound, "{}: no tokenizer.json in the tokenizer folder", dir);
    const std::string tname = tpath.string();
    const json root = parse_json_file(tname, tname);
    const json config = fs::exists(cpath, ec) ? parse_json_file(cpath.string(), cpath.string()) : json::object();
    if (!root.is_object() || !root.contains("model") || !root["model"].is_object())
        raise(ErrorCode::InvalidFile, "{}: no 'model' object (not a tokenizer.json?)", tname);
    const json& model = root["model"];
    if (model.value("type", "BPE") != "BPE" || !is_type(root.value("decoder", json()), "ByteLevel"))
        raise(ErrorCode::Unsupported, "{}: only byte-level BPE tokenizers convert to GGUF (this one is {} with a {} "
              "decoder)", tname, model.value("type", "BPE"), root.value("decoder", json()).value("type", "null"));
    if (!root.value("normalizer", json()).is_null() && !is_type(root["normalizer"], "NFC"))
        raise(ErrorCode::Unsupported, "{}: normalizer {} has no GGUF equivalent", tname, root["normalizer"].dump());

    GgufTokenizerSummary summary;
    summary.pre = pre_name(root.value("pre_tokenizer", json()), tname);

    // id -> (text, type)
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    auto put = [&](int64_t id, const std::string& text, int32_t type) {
        if (id < 0 || id >= n_vocab)
            raise(ErrorCode::InvalidArgument, "{}: token id {} ('{}') is outside the model's vocabulary of {}", tname, id,
                  text, n_vocab);
        if (size_t(id) >= tokens.size()) {
            tokens.resize(size_t(id) + 1);
            types.resize(size_t(id) + 1, 0);
        }
        tokens[size_t(id)] = text;
        types[size_t(id)] = type;
    };
    const json& vocab = model.value("vocab", json());
    if (!vocab.is_object() || vocab.empty()) raise(ErrorCode::InvalidFile, "{}: model.vocab is missing or empty", tname);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer()) raise(ErrorCode::InvalidFile, "{}: model.vocab[\"{}\"] is not an id", tname, it.key());
        put(it.value().get<int64_t>(), it.key(), kNormal);
    }
    std::unordered_map<std::string, int64_t> id_of;
    if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
        for (const json& a : root["added_tokens"]) {
            const std::string content = a.value("content", "");
            const int64_t id = a.value("id", int64_t(-1));
            put(id, content, a.value("special", false) || looks_special(content) ? kControl : kUserDefined);
        }
    }
    summary.n_tokens = int64_t(tokens.size());
    for (size_t i = 0; i < tokens.size(); i++)
        if (types[i] == 0) {  // a hole in the ids
            tokens[i] = "[PAD" + std::to_string(i) + "]";
            types[i] = kUnused;
        }
    for (int64_t i = int64_t(tokens.size()); i < n_vocab; i++) {
        tokens.push_back("[PAD" + std::to_string(i) + "]");
        types.push_back(kUnused);
    }
    for (size_t i = 0; i < tokens.size(); i++) id_of.emplace(tokens[i], int64_t(i));

    std::vector<std::string> merges;
    if (model.contains("merges") && model["merges"].is_array()) {
        merges.reserve(model["merges"].size());
        for (const json& m : model["merges"]) {
            if (m.is_string()) merges.push_back(m.get<std::string>());
            else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
                merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            else raise(ErrorCode::InvalidFile, "{}: a merge is neither \"a b\" nor [\"a\", \"b\"]", tname);
        }
    }
    if (merges.empty()) raise(ErrorCode::InvalidFile, "{}: a byte-level BPE tokenizer needs model.merges", tname);

    // BOS/EOS as Tokenizer::from_hf_json decides them: TemplateProcessing first, then tokenizer_config's flags.
    auto find_id = [&](const std::string& t) -> int64_t {
        auto it = id_of.find(t);
        return it == id_of.end() ? -1 : it->second;
    };
    std::vector<int64_t> prefix, suffix;
    const json post = root.value("post_processor", json());
    std::vector<json> procs;
    if (is_type(post, "Sequence") && post.contains("processors") && post["processors"].is_array())
        for (const json& p : post["processors"]) procs.push_back(p);
    else if (post.is_object())
        procs.push_back(post);
    for (const json& p : procs) {
        if (!is_type(p, "TemplateProcessing") || !p.contains("single") || !p["single"].is_array()) continue;
        bool after = false;
        for (const json& item : p["single"]) {
            if (item.contains("Sequence")) {
                after = true;
                continue;
            }
            if (!item.contains("SpecialToken")) continue;
            const std::string name = item["SpecialToken"].value("id", "");
            const json specials = p.value("special_tokens", json());
            if (specials.is_object() && specials.contains(name) && specials[name].contains("ids")) {
                for (const json& id : specials[name]["ids"]) (after ? suffix : prefix).push_back(id.get<int64_t>());
            } else if (const int64_t id = find_id(name); id >= 0) {
                (after ? suffix : prefix).push_back(id);
            }
        }
    }
    if (prefix.size() > 1 || suffix.size() > 1)
        raise(ErrorCode::Unsupported, "{}: the post-processor adds several tokens around the text (GGUF has one BOS and "
              "one EOS)", tname);
    int64_t bos = config.contains("bos_token") ? find_id(token_string(config["bos_token"])) : -1;
    int64_t eos = config.contains("eos_token") ? find_id(token_string(config["eos_token"])) : -1;
    if (bos < 0 && !prefix.empty()) bos = prefix.front();
    bool add_bos = !prefix.empty(), add_eos = !suffix.empty();
    if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean())
        add_bos = config["add_bos_token"].get<bool>() && (bos >= 0 || add_bos);
    if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean())
        add_eos = config["add_eos_token"].get<bool>() && (eos >= 0 || add_eos);
    if (add_bos && !prefix.empty()) bos = prefix.front();
    if (add_eos && !suffix.empty()) eos = suffix.front();

    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", summary.pre);
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_string_array("tokenizer.ggml.merges", merges);
    if (bos >= 0) w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(bos));
    if (eos >= 0) w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(eos));
    // Other end-of-generation ids become EOT/EOM (the two extra stop ids GGUF has): by their text first
    // (<|eom_id|>, <|eot_id|>, <|im_end|> ...), then in order into whichever is still free.
    int64_t eot = -1, eom = -1;
    std::vector<int64_t> rest;
    for (int64_t id : eos_ids) {
        if (id == eos || id < 0 || id >= n_vocab || id == eot || id == eom) continue;
        const std::string& t = tokens[size_t(id)];
        if (t == "<|eom_id|>" && eom < 0) eom = id;
        else if ((t == "<|eot_id|>" || t == "<|im_end|>" || t == "<|end|>" || t == "<end_of_turn>") && eot < 0) eot = id;
        else rest.push_back(id);
    }
    for (int64_t id : rest) {
        if (eot < 0) eot = id;
        else if (eom < 0 && id != eot) eom = id;
    }
    if (eot >= 0) w.add_u32("tokenizer.ggml.eot_token_id", uint32_t(eot));
    if (eom >= 0) w.add_u32("tokenizer.ggml.eom_token_id", uint32_t(eom));
    if (config.contains("pad_token"))
        if (const int64_t pad = find_id(token_string(config["pad_token"])); pad >= 0)
            w.add_u32("tokenizer.ggml.padding_token_id", uint32_t(pad));
    w.add_bool("tokenizer.ggml.add_bos_token", add_bos);
    w.add_bool("tokenizer.ggml.add_eos_token", add_eos);
    w.add_bool("tokenizer.ggml.add_space_prefix", false);
    if (config.contains("chat_template")) {
        const json& ct = config["chat_template"];
        std::string tmpl;
        if (ct.is_string()) tmpl = ct.get<std::string>();
        else if (ct.is_array())
            for (const json& e : ct)
                if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
                    tmpl = e["template"].get<std::string>();
        if (!tmpl.empty()) w.add_string("tokenizer.chat_template", tmpl);
    }
    return summary;
}

}  // namespace osprey::formats
