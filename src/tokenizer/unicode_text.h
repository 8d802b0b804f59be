// UTF-8 helpers for the tokenizers: sequence lengths and validity, the GPT-2 byte<->unicode table, and NFC.
//
// Invalid UTF-8 is never an error here: helpers report it so callers can treat such bytes as single bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace osprey::tokenizer {

// Length of the UTF-8 sequence that starts with `lead` from its lead byte alone (1 for continuation/invalid bytes).
size_t utf8_seq_len(uint8_t lead);

// Length of the valid UTF-8 sequence at s[pos], or 0 if the bytes there are not a complete valid sequence.
size_t utf8_valid_len(std::string_view s, size_t pos);

// Whether the whole string is valid UTF-8.
bool is_valid_utf8(std::string_view s);

// Length of the longest prefix of `s` that ends at a character boundary and is followed only by an incomplete
// (but so far valid) sequence; bytes that can never become valid are counted as complete (the caller replaces them).
size_t utf8_complete_prefix(std::string_view s);

// Appends the UTF-8 encoding of codepoint `cp`.
void append_utf8(std::string& out, uint32_t cp);

// Decodes the valid sequence of length n at s[pos].
uint32_t decode_utf8(std::string_view s, size_t pos, size_t n);

// Replaces every invalid byte with U+FFFD so the result is valid UTF-8.
std::string sanitize_utf8(std::string_view s);

// GPT-2 byte-level mapping: each byte to a printable codepoint, encoded as UTF-8 (e.g. ' ' -> "Ġ").
const std::string& byte_to_unicode(uint8_t byte);
// The inverse: returns -1 when `cp` is not one of the 256 mapped codepoints.
int unicode_to_byte(uint32_t cp);

// NFC normalisation of the valid UTF-8 runs of `s` (invalid bytes pass through). Requires ICU (OSPREY_WITH_ICU);
// without it the text is returned unchanged.
std::string nfc_normalize(std::string_view s);
bool nfc_available();

}  // namespace osprey::tokenizer
