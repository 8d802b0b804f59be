# Osprey: the two commands a user needs are `make run` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
# The CUDA backend is compiled whenever nvcc is found (CI compiles it without a GPU; its GPU tests then skip).
NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CMAKE_FLAGS ?= $(if $(NVCC),-DOSPREY_CUDA=ON -DCMAKE_CUDA_COMPILER=$(NVCC),)

.PHONY: deps build run test models test-models test-python test-sanitize clean

deps:
	@bash scripts/install_deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

models:
	@bash scripts/fetch_models.sh smollm2

run: deps build models
	./$(BUILD)/osprey run -p "What is the capital of France?" --chat -n 64

MODEL_CACHE ?= $(or $(OSPREY_MODEL_CACHE),$(HOME)/.cache/osprey/models)

# Test models: both GGUF files, and their weights as float32 Hugging Face folders (tests/golden/gguf_to_hf.py).
test-models: models
	@bash scripts/fetch_models.sh gemma3 > /dev/null
	@[ -f $(MODEL_CACHE)/smollm2-f32-hf/config.json ] || python3 tests/golden/gguf_to_hf.py \
		$(MODEL_CACHE)/SmolLM2-135M-Instruct.Q4_1.gguf $(MODEL_CACHE)/smollm2-f32-hf
	@[ -f $(MODEL_CACHE)/gemma3-f32-hf/config.json ] || python3 tests/golden/gguf_to_hf.py \
		$(MODEL_CACHE)/gemma-3-270m-q4_k_m.gguf $(MODEL_CACHE)/gemma3-f32-hf

# Parser and tokenizer tests again under AddressSanitizer + UBSan (bad input must never read out of range).
ASAN_BUILD ?= build-asan
test-sanitize: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOSPREY_SANITIZE=ON > /dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target test_formats test_tokenizer
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(ASAN_BUILD)/tests/test_formats
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(ASAN_BUILD)/tests/test_tokenizer

# Python tests (pytest; exit status 5 means none were collected).
test-python: build test-models
	OSPREY_BINARY=$(CURDIR)/$(BUILD)/osprey OSPREY_BIN=$(CURDIR)/$(BUILD)/osprey python3 -m pytest -q $(wildcard tests/golden tests/server tests/bench); \
		rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

test: deps build test-models
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-python
	$(MAKE) --no-print-directory test-sanitize

clean:
	rm -rf $(BUILD)
