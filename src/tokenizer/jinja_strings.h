// Python str methods on UTF-8 strings, as chat templates call them (strip, split, title, ...).
// Case mapping covers ASCII, Latin-1, Greek and Cyrillic; other scripts are left unchanged.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace osprey::tokenizer::jinja {

enum class StripSide { Both, Left, Right };
// chars == nullopt: Python whitespace.
std::string py_strip(std::string_view s, const std::optional<std::string>& chars, StripSide side);
std::string py_lower(std::string_view s);
std::string py_upper(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
// str.split / str.rsplit; sep == nullopt splits on whitespace runs.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, long maxsplit,
                                  bool from_right);
std::vector<std::string> py_splitlines(std::string_view s, bool keepends);
std::string py_replace(std::string_view s, std::string_view old, std::string_view replacement, long count);
size_t py_len(std::string_view s);  // code points
long py_count(std::string_view s, std::string_view sub);
long py_find(std::string_view s, std::string_view sub, bool from_right);  // code-point index or -1

}  // namespace osprey::tokenizer::jinja
