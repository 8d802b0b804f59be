#!/usr/bin/env bash
# Runs one libFuzzer target on one core: tests/fuzz/run_fuzz.sh NAME [SECONDS] [BUILD_DIR]
# The working corpus lives in BUILD_DIR/fuzz-corpus/NAME (seeded from tests/fuzz/seeds/NAME); crashes land in
# BUILD_DIR/fuzz-artifacts/ and the log in BUILD_DIR/fuzz-logs/NAME.log.
set -euo pipefail
name="$1"; secs="${2:-600}"; build="${3:-build-fuzz}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$build/tests/fuzz/fuzz_$name"
[ -x "$bin" ] || { echo "no $bin: build it with cmake --build $build --target fuzz_$name" >&2; exit 2; }
mkdir -p "$build/fuzz-corpus/$name" "$build/fuzz-artifacts" "$build/fuzz-logs"
dict=()
[ -f "$root/tests/fuzz/$name.dict" ] && dict=(-dict="$root/tests/fuzz/$name.dict")
exec "$bin" -max_total_time="$secs" -max_len="${MAX_LEN:-8192}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="$build/fuzz-artifacts/$name-" \
    "$build/fuzz-corpus/$name" "$root/tests/fuzz/seeds/$name" > "$build/fuzz-logs/$name.log" 2>&1
