// The same weights as a float32 safetensors folder (written by tests/golden/gguf_to_hf.py with the gguf package and
// numpy: llama q/k un-permuted, Gemma norms stored as w) load through the Hugging Face path and meet the same
// bounds against the transformers goldens. `make test` writes the folders into the model cache.
#include <gtest/gtest.h>

#include <filesystem>

#include "golden_check.h"
#include "model_test_util.h"

using namespace osprey;

TEST(HfPathGolden, SmolLM2SafetensorsMatchesTransformers) {
    test_util::check_model_against_golden(test_util::model_cache() + "/smollm2-f32-hf", "smollm2");
}

TEST(HfPathGolden, Gemma3SafetensorsMatchesTransformers) {
    test_util::check_model_against_golden(test_util::model_cache() + "/gemma3-f32-hf", "gemma3");
}
