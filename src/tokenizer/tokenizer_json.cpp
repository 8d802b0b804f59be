// Tokenizer::from_hf_json: interprets a Hugging Face tokenizer.json (normalizer, pre_tokenizer, BPE model,
// added_tokens, post_processor, decoder) plus tokenizer_config.json and generation_config.json when present.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

namespace osprey::tokenizer {

using nlohmann::json;

namespace {

json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) raise(ErrorCode::NotFound, "cannot open '{}'", path);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return json::parse(ss.str());
    } catch (const json::exception& e) {
        raise(ErrorCode::InvalidFile, "{}: malformed JSON: {}", path, e.what());
    }
}

// Typed accessors that raise Error(InvalidFile) naming the file and the field.
struct Reader {
    std::string path;

    [[noreturn]] void fail(const std::string& where, const std::string& what) const {
        raise(ErrorCode::InvalidFile, "{}: {} {}", path, where, what);
    }
    const json& obj(const json& j, const std::string& where) const {
        if (!j.is_object()) fail(where, fmt::format("must be an object, not {}", j.type_name()));
        return j;
    }
    const json& field(const json& j, const char* key, const std::string& where) const {
        obj(j, where);
        auto it = j.find(key);
        if (it == j.end()) fail(where, fmt::format("has no '{}' field", key));
        return *it;
    }
    std::string str(const json& j, const char* key, const std::string& where) const {
        const json& v = field(j, key, where);
        if (!v.is_string()) fail(where + "." + key, fmt::format("must be a string, not {}", v.type_name()));
        return v.get<std::string>();
    }
    std::string str_or(const json& j, const char* key, const std::string& dflt) const {
        auto it = j.find(key);
        return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
    }
    bool flag(const json& j, const char* key, bool dflt, const std::string& where) const {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return dflt;
        if (!it->is_boolean()) fail(where + "." + key, fmt::format("must be a boolean, not {}", it->type_name()));
        return it->get<bool>();
    }
    int64_t integer(const json& v, const std::string& where) const {
        if (!v.is_number_integer()) fail(where, fmt::format("must be an integer, not {}", v.type_name()));
        return v.get<int64_t>();
    }
    const json& array(const json& v, const std::string& where) const {
        if (!v.is_array()) fail(where, fmt::format("must be an array, not {}", v.type_name()));
        return v;
    }
};

// A Split/Replace pattern: {"Regex": "..."} or {"String": "..."} (quoted for PCRE2).
std::string pattern_regex(const Reader& r, const json& p, const std::string& where) {
    r.obj(p, where);
    if (p.contains("Regex")) return r.str(p, "Regex", where);
    const std::string s = r.str(p, "String", where);
    std::string quoted;
    for (char c : s) {
        if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) quoted.push_back('\\');
        quoted.push_back(c);
    }
    return quoted;
}

SplitBehavior parse_behavior(const Reader& r, const std::string& b, const std::string& where) {
    if (b == "Isolated") return SplitBehavior::Isolated;
    if (b == "Removed") return SplitBehavior::Removed;
    if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
    if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
    if (b == "Contiguous") return SplitBehavior::Contiguous;
    r.fail(where, fmt::format("has unknown split behavior '{}'", b));
}

// A token given as "text" or {"content": "text", ...}.
std::string token_string(const json& j) {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
    return "";
}

}  // namespace

struct JsonLoader {
    static void normalizer(Tokenizer& tk, const Reader& r, const json& n, const std::string& where) {
        if (n.is_null()) return;
        const std::string type = r.str(n, "type", where);
        if (type == "Sequence") {
            const json& list = r.array(r.field(n, "normalizers", where), where + ".normalizers");
            for (size_t i = 0; i < list.size(); ++i) normalizer(tk, r, list[i], fmt::format("{}.normalizers[{}]", where, i));
        } else if (type == "NFC") {
            if (!nfc_available())
                spdlog::warn("tokenizer: NFC normalisation is not built in (no ICU); non-NFC input may tokenize differently");
            tk.normalizers_.push_back({NormalizerOp::Kind::Nfc, "", ""});
        } else if (type == "Replace") {
            const json& p = r.field(n, "pattern", where);
            if (!p.contains("String")) r.fail(where, "Replace normalizer: only String patterns are supported");
            tk.normalizers_.push_back({NormalizerOp::Kind::Replace, r.str(p, "String", where + ".pattern"),
                                       r.str(n, "content", where)});
        } else if (type == "Prepend") {
            tk.normalizers_.push_back({NormalizerOp::Kind::Prepend, "", r.str(n, "prepend", where)});
        } else {
            raise(ErrorCode::Unsupported, "{}: {} normalizer type '{}' is not supported", r.path, where, type);
        }
    }

    static void pre_tokenizer(Tokenizer& tk, const Reader& r, const json& p, const std::string& where) {
        if (p.is_null()) return;
        const std::string type = r.str(p, "type", where);
        PreTokenizerStep step;
        if (type == "Sequence") {
            const json& list = r.array(r.field(p, "pretokenizers", where), where + ".pretokenizers");
            for (size_t i = 0; i < list.size(); ++i)
                pre_tokenizer(tk, r, list[i], fmt::format("{}.pretokenizers[{}]", where, i));
            return;
        } else if (type == "Split") {
            step.kind = PreTokenizerStep::Kind::Split;
            step.regex = PreTokenizer::regex(pattern_regex(r, r.field(p, "pattern", where), where + ".pattern"));
            step.behavior = parse_behavior(r, r.str(p, "behavior", where), where);
            step.invert = r.flag(p, "invert", false, where);
        } else if (type == "Digits") {
            step.kind = PreTokenizerStep::Kind::Split;
            step.regex = PreTokenizer::regex(r.flag(p, "individual_digits", false, where) ? R"(\p{N})" : R"(\p{N}+)");
        } else if (type == "ByteLevel") {
            step.kind = PreTokenizerStep::Kind::ByteLevel;
            step.add_prefix_space = r.flag(p, "add_prefix_space", false, where);
            if (r.flag(p, "use_regex", true, where)) step.regex = PreTokenizer::regex(kGpt2Pattern);
            tk.byte_level_ = true;
        } else if (type == "Metaspace") {
            step.kind = PreTokenizerStep::Kind::Metaspace;
            step.replacement = r.str_or(p, "replacement", "\xE2\x96\x81");
            const std::string scheme = r.str_or(p, "prepend_scheme", r.flag(p, "add_prefix_space", true, where) ? "always" : "never");
            step.prepend = scheme == "first" ? PreTokenizerStep::Prepend::First
                           : scheme == "never" ? PreTokenizerStep::Prepend::Never
                                               : PreTokenizerStep::Prepend::Always;
            step.metaspace_split = r.flag(p, "split", true, where);
            tk.strip_leading_space_ = step.prepend != PreTokenizerStep::Prepend::Never;
        } else {
            raise(ErrorCode::Unsupported, "{}: {} pre-tokenizer type '{}' is not supported", r.path, where, type);
        }
        tk.pre_.add_step(std::move(step));
    }

    // TemplateProcessing "single": special tokens before/after the sequence "A".
    static void post_processor(Tokenizer& tk, const Reader& r, const json& p, const std::string& where) {
        if (p.is_null()) return;
        const std::string type = r.str(p, "type", where);
        if (type == "Sequence") {
            const json& list = r.array(r.field(p, "processors", where), where + ".processors");
            for (size_t i = 0; i < list.size(); ++i) post_processor(tk, r, list[i], fmt::format("{}.processors[{}]", where, i));
            return;
        }
        if (type != "TemplateProcessing") return;  // ByteLevel etc.: nothing to add
        const json& single = r.array(r.field(p, "single", where), where + ".single");
        const json& specials = r.field(p, "special_tokens", where);
        bool after = false;
        for (const auto& item : single) {
            if (item.contains("Sequence")) {
                after = true;
                continue;
            }
            if (!item.contains("SpecialToken")) continue;
            const std::string name = r.str(item["SpecialToken"], "id", where + ".single[].SpecialToken");
            std::vector<int32_t> ids;
            if (specials.is_object() && specials.contains(name)) {
                for (const auto& id : r.array(r.field(specials[name], "ids", where), where + ".special_tokens.ids"))
                    ids.push_back(static_cast<int32_t>(r.integer(id, where + ".special_tokens.ids[]")));
            } else if (auto id = tk.vocab_.find(name); id >= 0) {
                ids.push_back(id);
            }
            auto& dst = after ? tk.suffix_ids_ : tk.prefix_ids_;
            dst.insert(dst.end(), ids.begin(), ids.end());
        }
    }

    static Tokenizer load(const std::string& path, const std::string& config_path) {
        Tokenizer tk;
        const Reader r{path};
        const json root = read_json(path);
        r.obj(root, "top level");
        if (!root.contains("model")) r.fail("top level", "has no 'model' field (not a tokenizer.json?)");
        const json& model = r.obj(root["model"], "model");
        const std::string mtype = r.str_or(model, "type", "BPE");
        if (mtype != "BPE")
            raise(ErrorCode::Unsupported, "{}: tokenizer model type '{}' is not supported (only BPE)", path, mtype);

        Vocab& v = tk.vocab_;
        const json& vocab = r.obj(r.field(model, "vocab", "model"), "model.vocab");
        v.token_to_id.reserve(vocab.size() * 2);
        for (auto it = vocab.begin(); it != vocab.end(); ++it) {
            const int64_t id = r.integer(it.value(), fmt::format("model.vocab[\"{}\"]", it.key()));
            if (id < 0 || id > 10'000'000) r.fail(fmt::format("model.vocab[\"{}\"]", it.key()), "has an out-of-range id");
            v.set(static_cast<int32_t>(id), it.key(), TokenType::Normal);
        }
        if (v.tokens.empty()) r.fail("model.vocab", "is empty");

        std::vector<std::pair<std::string, std::string>> merges;
        if (model.contains("merges")) {
            const json& ms = r.array(model["merges"], "model.merges");
            merges.reserve(ms.size());
            for (size_t i = 0; i < ms.size(); ++i) {
                const json& m = ms[i];
                if (m.is_string()) {
                    const std::string s = m.get<std::string>();
                    const size_t sp = s.find(' ', 1);
                    if (sp == std::string::npos) r.fail(fmt::format("model.merges[{}]", i), "is not 'a b'");
                    merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
                } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                    merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
                } else {
                    r.fail(fmt::format("model.merges[{}]", i), "must be \"a b\" or [\"a\", \"b\"]");
                }
            }
        }

        // Added tokens extend the vocabulary and are split out before the model.
        if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
            const json& list = r.array(root["added_tokens"], "added_tokens");
            for (size_t i = 0; i < list.size(); ++i) {
                const std::string where = fmt::format("added_tokens[{}]", i);
                const json& a = r.obj(list[i], where);
                AddedToken t;
                const int64_t id = r.integer(r.field(a, "id", where), where + ".id");
                if (id < 0 || id > 10'000'000) r.fail(where + ".id", "is out of range");
                t.id = static_cast<int32_t>(id);
                t.content = r.str(a, "content", where);
                t.special = r.flag(a, "special", false, where);
                t.lstrip = r.flag(a, "lstrip", false, where);
                t.rstrip = r.flag(a, "rstrip", false, where);
                v.set(t.id, t.content, t.special ? TokenType::Control : TokenType::UserDefined);
                tk.added_.push_back(std::move(t));
            }
        }
        for (size_t i = 0; i < v.tokens.size(); ++i) {
            if (v.types[i] == TokenType::Unused && !v.tokens[i].empty()) v.types[i] = TokenType::Normal;
        }

        tk.byte_level_ = false;
        normalizer(tk, r, root.value("normalizer", json()), "normalizer");
        pre_tokenizer(tk, r, root.value("pre_tokenizer", json()), "pre_tokenizer");
        const json decoder = root.value("decoder", json());
        if (decoder.is_object() && decoder.value("type", "") == "ByteLevel") tk.byte_level_ = true;
        if (decoder.is_object() && decoder.value("type", "") == "Sequence" && decoder.contains("decoders") &&
            decoder["decoders"].is_array()) {
            for (const auto& d : decoder["decoders"]) {
                if (d.is_object() && d.value("type", "") == "Strip" && d.value("start", 0) > 0)
                    tk.strip_leading_space_ = true;
            }
        }
        for (const auto& op : tk.normalizers_)
            if (op.kind == NormalizerOp::Kind::Prepend) tk.strip_leading_space_ = true;

        BpeOptions opt;
        opt.byte_level = tk.byte_level_;
        opt.byte_fallback = r.flag(model, "byte_fallback", false, "model");
        opt.ignore_merges = r.flag(model, "ignore_merges", false, "model");
        opt.fuse_unk = r.flag(model, "fuse_unk", false, "model");
        const std::string unk = model.contains("unk_token") && model["unk_token"].is_string()
                                    ? model["unk_token"].get<std::string>() : "";
        opt.unk_id = unk.empty() ? -1 : v.find(unk);
        tk.unk_id_ = opt.unk_id;
        tk.kind_ = Tokenizer::ModelKind::Bpe;
        tk.bpe_ = std::make_unique<BpeModel>(v, merges, opt);
        if (!tk.byte_level_ && opt.byte_fallback) {
            for (size_t i = 0; i < v.tokens.size(); ++i) {
                const std::string& t = v.tokens[i];
                if (v.types[i] == TokenType::Normal && t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>')
                    v.types[i] = TokenType::Byte;
            }
        }

        post_processor(tk, r, root.value("post_processor", json()), "post_processor");

        // tokenizer_config.json: BOS/EOS names, add_bos_token/add_eos_token, chat_template.
        json config;
        if (!config_path.empty()) {
            config = read_json(config_path);
            Reader{config_path}.obj(config, "top level");
        }
        auto token_id = [&](const char* key) -> int32_t {
            if (!config.is_object() || !config.contains(key)) return -1;
            const std::string s = token_string(config[key]);
            return s.empty() ? -1 : v.find(s);
        };
        tk.bos_id_ = token_id("bos_token");
        tk.eos_id_ = token_id("eos_token");
        if (tk.bos_id_ < 0 && !tk.prefix_ids_.empty()) tk.bos_id_ = tk.prefix_ids_.front();
        if (config.is_object()) {
            const Reader cr{config_path};
            if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
                const bool want = config["add_bos_token"].get<bool>();
                auto& p = tk.prefix_ids_;
                const bool has = !p.empty() && p.front() == tk.bos_id_;
                if (want && !has && tk.bos_id_ >= 0) p.insert(p.begin(), tk.bos_id_);
                if (!want && has) p.erase(p.begin());
            }
            if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
                const bool want = config["add_eos_token"].get<bool>();
                auto& s = tk.suffix_ids_;
                const bool has = !s.empty() && s.back() == tk.eos_id_;
                if (want && !has && tk.eos_id_ >= 0) s.push_back(tk.eos_id_);
                if (!want && has) s.pop_back();
            }
            if (config.contains("chat_template")) {
                const json& ct = config["chat_template"];
                if (ct.is_string()) {
                    tk.chat_template_ = ct.get<std::string>();
                } else if (ct.is_array()) {
                    for (const auto& e : ct)
                        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
                            e["template"].is_string())
                            tk.chat_template_ = e["template"].get<std::string>();
                } else if (!ct.is_null()) {
                    cr.fail("chat_template", "must be a string or a list of {name, template}");
                }
            }
        }
        tk.add_bos_ = !tk.prefix_ids_.empty();
        tk.add_eos_ = !tk.suffix_ids_.empty();
        for (int32_t id : tk.prefix_ids_)
            if (id < 0 || id >= v.n_vocab()) r.fail("post_processor", fmt::format("names token id {} outside the vocabulary", id));
        for (int32_t id : tk.suffix_ids_)
            if (id < 0 || id >= v.n_vocab()) r.fail("post_processor", fmt::format("names token id {} outside the vocabulary", id));
        tk.finalize();

        // generation_config.json beside tokenizer.json may list more end-of-generation ids.
        const auto gen = std::filesystem::path(path).parent_path() / "generation_config.json";
        std::error_code ec;
        if (std::filesystem::exists(gen, ec)) {
            try {
                const json g = read_json(gen.string());
                if (g.is_object() && g.contains("eos_token_id")) {
                    const json& e = g["eos_token_id"];
                    if (e.is_number_integer()) tk.add_eos_id(e.get<int32_t>());
                    if (e.is_array())
                        for (const auto& x : e)
                            if (x.is_number_integer()) tk.add_eos_id(x.get<int32_t>());
                }
            } catch (const Error& e) {
                spdlog::warn("tokenizer: ignoring {}: {}", gen.string(), e.what());
            }
        }
        return tk;
    }
};

Tokenizer Tokenizer::from_hf_json(const std::string& tokenizer_json_path, const std::string& tokenizer_config_path) {
    try {
        return JsonLoader::load(tokenizer_json_path, tokenizer_config_path);
    } catch (const json::exception& e) {
        raise(ErrorCode::InvalidFile, "{}: unexpected structure: {}", tokenizer_json_path, e.what());
    }
}

}  // namespace osprey::tokenizer
