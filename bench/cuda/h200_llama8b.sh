#!/usr/bin/env bash
# Llama-3.1-8B-shaped bf16 on one H200: osprey synth, Osprey's decode/prefill speed and teacher-forced scores,
# then transformers on the same weights (agreement, its own speed, copy bandwidth and bf16 matmul rate measured in
# the same run). Runs on the GPU machine from binaries built here and carried in .devcarry, or packed in .devcarry2/pack.tar.xz (osprey, test_backend_ops,
# the shared libraries they need, the Llama-3 tokenizer and the evaluation text). Results under $OUT.
#   STEPS="ops synth osprey hf" (default all)
set -u -o pipefail
C=${C:-.devcarry}
# The carried files may come packed (tar.xz) to fit the transfer limit.
if [ -f .devcarry2/pack.tar.xz ]; then mkdir -p $C && tar xJf .devcarry2/pack.tar.xz -C $C; fi
OUT=${OUT:-/tmp/out}
M=${MODEL_DIR:-/tmp/llama8b}
STEPS=${STEPS:-"ops synth osprey hf"}
mkdir -p "$OUT"
. "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
ldd $C/osprey | grep "not found"
if step ops; then run_backend_ops 240; fi
if step synth; then
  s=$(date +%s)
  [ -f "$M/config.json" ] || $C/osprey synth --shape llama-3.1-8b --dtype bf16 --tokenizer $C/llama3 -o "$M" > "$OUT/synth.txt" 2>&1
  echo "synth rc=$? $(( $(date +%s) - s )) s"; du -sh "$M"
fi
if step osprey; then
  T=$C/wikitext-2-raw-test.txt
  for run in "decode 512 128" "prefill 4096 1"; do
    set -- $run
    /usr/bin/time -v $C/osprey run -m "$M" --device cuda -f $T --prompt-tokens $2 -n $3 --ignore-eos --no-bos \
      --stats-json "$OUT/osprey_$1.json" > "$OUT/osprey_$1.txt" 2> "$OUT/osprey_$1.log"
    echo "osprey $1 rc=$?: $(grep -E 'tokens/s' "$OUT/osprey_$1.log" | tail -1)"
    grep -E "Maximum resident|Elapsed" "$OUT/osprey_$1.log"
  done
  s=$(date +%s)
  $C/osprey run -m "$M" --device cuda -f $T --prompt-tokens 1024 --no-bos --score-out /tmp/osprey_score.json \
    2> "$OUT/osprey_score.log" > /dev/null
  echo "osprey score rc=$? $(( $(date +%s) - s )) s"; tail -2 "$OUT/osprey_score.log"
fi
if step eager; then  # the same decode without CUDA graphs: speed, and the same greedy text
  T=$C/wikitext-2-raw-test.txt
  $C/osprey run -m "$M" --device cuda -f $T --prompt-tokens 512 -n 128 --ignore-eos --no-bos --enforce-eager \
    --stats-json "$OUT/osprey_decode_eager.json" > "$OUT/osprey_decode_eager.txt" 2> "$OUT/osprey_decode_eager.log"
  echo "osprey decode eager rc=$?: $(grep -E 'tokens/s' "$OUT/osprey_decode_eager.log" | tail -1)"
  if cmp -s "$OUT/osprey_decode.txt" "$OUT/osprey_decode_eager.txt"; then echo "graphs == eager text: yes"
  else echo "graphs == eager text: NO"; fi
fi
if step sample; then  # batch-1 decode drawing with temperature / top-p on the device (only the ids come back)
  T=$C/wikitext-2-raw-test.txt
  $C/osprey run -m "$M" --device cuda -f $T --prompt-tokens 512 -n 128 --ignore-eos --no-bos --temperature 0.8 \
    --top-p 0.95 --seed 1 > "$OUT/osprey_sample.txt" 2> "$OUT/osprey_sample.log"
  echo "osprey sample (T 0.8, top-p 0.95) rc=$?: $(grep -E 'tokens/s' "$OUT/osprey_sample.log" | tail -1)"
fi
if step hf; then
  s=$(date +%s)
  PYTHONUNBUFFERED=1 python3 bench/cuda/transformers_compare.py --model "$M" --score /tmp/osprey_score.json \
    -o "$OUT/transformers.json" > "$OUT/transformers.log" 2>&1
  echo "transformers rc=$? $(( $(date +%s) - s )) s"; tail -30 "$OUT/transformers.log"
fi
if step profile; then  # per-op GPU time of a decode run and a long prefill (OSPREY_CUDA_PROFILE)
  T=$C/wikitext-2-raw-test.txt
  OSPREY_CUDA_PROFILE=1 $C/osprey run -m "$M" --device cuda -f $T --prompt-tokens 512 -n 128 --ignore-eos --no-bos \
    > /dev/null 2> "$OUT/profile_decode.txt"; tail -25 "$OUT/profile_decode.txt"
  OSPREY_CUDA_PROFILE=1 $C/osprey run -m "$M" --device cuda -f $T --prompt-tokens 4096 -n 1 --ignore-eos --no-bos \
    > /dev/null 2> "$OUT/profile_prefill.txt"; tail -25 "$OUT/profile_prefill.txt"
fi
if step variants; then  # batch-1 decode under kernel-choice switches (comparisons only), then the layer-stream GEMV timing
  # VARIANTS: space-separated env settings, e.g. OSPREY_CUDA_PDL=0 (no programmatic launches), OSPREY_CUDA_PDL=gemv,
  # OSPREY_GEMV_PLAIN=warp (one warp per row for every plain product); X=1 is the default build.
  T=$C/wikitext-2-raw-test.txt
  for v in ${VARIANTS:-X=1 OSPREY_CUDA_PDL=0 OSPREY_CUDA_PDL=gemv OSPREY_GEMV_PLAIN=warp X=2}; do
    env $v $C/osprey run -m "$M" --device cuda -f $T --prompt-tokens 512 -n 128 --ignore-eos --no-bos \
      > "$OUT/variant_$v.txt" 2> "$OUT/variant_$v.log"
    echo "[$v] $(grep -E 'tokens/s' "$OUT/variant_$v.log" | tail -1 | sed 's/.*decode/decode/') $(md5sum < "$OUT/variant_$v.txt" | cut -c1-8)"
  done
  timeout 120 $C/test_backend_ops --gtest_also_run_disabled_tests --gtest_filter='*DecodeGemvStreamTiming*' 2>&1 \
    | grep -E "copy|gemv|graph" | tee "$OUT/gemv_stream_timing.txt"
fi
if step offline; then  # continuous vs static batching and KV waste: ShareGPT prompts (the file has no replies), output
  # lengths of mean 256 drawn uniform in [26, 486] or exponential (256 * Exp(1), clamped to 2,048 - prompt)
  # OFFLINE_PROMPTS requests (default 200; the file has 500), OFFLINE_SEQS max-num-seqs values (default 64).
  for seqs in ${OFFLINE_SEQS:-64}; do
  for dist in ${OFFLINE_DISTS:-uniform exponential}; do
    for sched in continuous static; do
      tag=${dist}_${seqs}seqs_$sched
      $C/osprey bench offline -m "$M" --device cuda --dataset sharegpt --dataset-path ${SHAREGPT:-.devcarry2/sharegpt_v3_filtered_500.json} \
        --num-prompts ${OFFLINE_PROMPTS:-200} --output-len 256 --random-range-ratio 0.9 --output-len-dist $dist --max-num-seqs $seqs \
        --max-num-batched-tokens $(( seqs > 64 ? 8192 : 2048 )) --scheduling $sched \
        --save-result "$OUT/offline_$tag.json" > "$OUT/offline_$tag.txt" 2>&1
      echo "offline $tag rc=$?"; grep -E "throughput|KV waste|Preempt|Elapsed" "$OUT/offline_$tag.txt" | head -6
    done
  done
  done
fi
if step offline1000; then  # offline throughput: 1,000 requests of 1,024 prompt tokens and 128 generated tokens
  $C/osprey bench offline -m "$M" --device cuda --input-len 1024 --output-len 128 --num-prompts 1000 --max-num-seqs 256 \
    --max-num-batched-tokens 8192 --save-result "$OUT/offline1000.json" > "$OUT/offline1000.txt" 2>&1
  echo "offline1000 rc=$?"; grep -E "throughput|Elapsed|Decode-only|TTFT|TPOT" "$OUT/offline1000.txt" | head -8
fi
if step hf_offline; then  # the same workload with transformers (static batches)
  python3 bench/cuda/transformers_offline.py --model "$M" --num-prompts ${HF_PROMPTS:-1000} --input-len 1024 --output-len 128 \
    --batch-size ${HF_BATCH:-64} -o "$OUT/hf_offline1000.json" > "$OUT/hf_offline1000.txt" 2>&1
  echo "hf_offline rc=$?"; grep -E "per_second|elapsed" "$OUT/hf_offline1000.txt"
fi
if step batch128; then  # decode throughput with 128 concurrent sequences: 512-token prompts, 128 new tokens each
  for mode in ${BATCH128_MODES:-graphs eager}; do  # graphs (default: async scheduling), eager (no graphs), sync (no async)
    flag=; [ $mode = eager ] && flag=--enforce-eager; [ $mode = sync ] && flag="--async-scheduling off"
    $C/osprey bench offline -m "$M" --device cuda --input-len 512 --output-len 128 --num-prompts 128 --max-num-seqs 128 \
      --max-num-batched-tokens 8192 $flag --save-result "$OUT/offline_batch128_$mode.json" > "$OUT/offline_batch128_$mode.txt" 2>&1
    echo "batch128 $mode rc=$?"; grep -E "Output token|TPOT|Elapsed|Decode-only" "$OUT/offline_batch128_$mode.txt" | head -5
  done
fi
if step serve; then  # osprey serve on the GPU, osprey bench serve at 64 and 256 concurrent streams (1,024 in / 128 out)
  $C/osprey serve -m "$M" --served-model-name llama8b --device ${SERVE_DEVICE:-cuda} --port 8011 --max-num-seqs 256 --max-num-batched-tokens 8192 \
    > "$OUT/serve_log.txt" 2>&1 &
  SP=$!
  for i in $(seq 120); do curl -sf http://127.0.0.1:8011/health > /dev/null && break; sleep 1; done
  for conc in 64 256; do
    $C/osprey bench serve --base-url http://127.0.0.1:8011 --model llama8b --tokenizer "$M" --dataset random \
      --random-input-len 1024 --random-output-len 128 --ignore-eos --num-prompts $((conc * 2)) --max-concurrency $conc \
      --percentiles 50,99 --no-progress --save-result "$OUT/serve_$conc.json" > "$OUT/serve_$conc.txt" 2>&1
    echo "serve $conc rc=$?"; grep -E "throughput|TTFT|TPOT|Failed|Successful" "$OUT/serve_$conc.txt" | head -12
  done
  kill $SP; wait $SP
fi
if step hf_serve; then  # transformers serve --continuous-batching on the same GPU and weights, same client and workload
  # Its serving extras come as wheels (no network on the GPU machine): python3 -m pip download -d .whl2 fastapi uvicorn
  # openai --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64. It rejects ignore_eos, so the
  # requests run without it (random weights rarely stop early; the client counts the tokens that came).
  python3 -m pip install --no-index --find-links ${WHEELS:-.whl2} fastapi uvicorn openai -q > "$OUT/hf_serve_pip.txt" 2>&1
  transformers serve --continuous-batching --host 127.0.0.1 --port 8012 "$M" > "$OUT/hf_serve_log.txt" 2>&1 &
  HP=$!
  for i in $(seq 120); do curl -sf http://127.0.0.1:8012/health > /dev/null && break; sleep 1; done
  for conc in ${HF_SERVE_CONC:-64}; do
    $C/osprey bench serve --base-url http://127.0.0.1:8012 --model "$M" --tokenizer "$M" --dataset random \
      --random-input-len 1024 --random-output-len 128 --num-prompts $conc --max-concurrency $conc \
      --percentiles 50,99 --no-progress --save-result "$OUT/hf_serve_$conc.json" > "$OUT/hf_serve_$conc.txt" 2>&1
    echo "hf_serve $conc rc=$?"; grep -E "throughput|TTFT|TPOT|Failed|Successful" "$OUT/hf_serve_$conc.txt" | head -12
  done
  kill $HP; wait $HP
fi
if step profile128; then  # per-op GPU time of the batch-128 run (eager: the profiler times each op)
  OSPREY_CUDA_PROFILE=1 $C/osprey bench offline -m "$M" --device cuda --input-len 512 --output-len 128 --num-prompts 128 \
    --max-num-seqs 128 --max-num-batched-tokens 8192 > "$OUT/profile_batch128.txt" 2>&1
  grep -E "Elapsed|Decode-only" "$OUT/profile_batch128.txt"; tail -22 "$OUT/profile_batch128.txt"
fi
if step quantbatch; then  # decode throughput by batch size, bf16 vs GGUF Q4_K_M (made by osprey synth)
  Q=/tmp/llama8b-q4_k_m.gguf
  [ -f $Q ] || $C/osprey synth --shape llama-3.1-8b --format gguf --dtype q4_k_m --tokenizer $C/llama3 -o $Q > /dev/null 2>&1
  for m in "$M" $Q; do
    for n in ${BATCHES:-1 16 64 128}; do
      $C/osprey bench offline -m "$m" --device cuda --input-len 512 --output-len 128 --num-prompts $n --max-num-seqs $n \
        --max-num-batched-tokens 8192 > "$OUT/quantbatch_$(basename $m)_$n.txt" 2>&1
      echo "$(basename $m) batch $n rc=$?: $(grep -E 'Decode-only' "$OUT/quantbatch_$(basename $m)_$n.txt")"
    done
  done
fi
if step quant; then  # batch-1 decode of GGUF-quantized 8B files made by osprey synth (Q4_K_M, Q8_0)
  T=$C/wikitext-2-raw-test.txt
  for q in ${QUANTS:-q4_k_m q8_0}; do
    s=$(date +%s)
    $C/osprey synth --shape llama-3.1-8b --format gguf --dtype $q --tokenizer $C/llama3 -o /tmp/llama8b-$q.gguf > /dev/null 2>&1
    echo "synth $q rc=$? $(( $(date +%s) - s )) s $(du -h /tmp/llama8b-$q.gguf | cut -f1)"
    $C/osprey run -m /tmp/llama8b-$q.gguf --device cuda -f $T --prompt-tokens 512 -n 128 --ignore-eos --no-bos \
      --stats-json "$OUT/osprey_decode_$q.json" > /dev/null 2> "$OUT/osprey_decode_$q.log"
    echo "decode $q: $(grep -E 'tokens/s' "$OUT/osprey_decode_$q.log" | tail -1 | sed 's/.*load/load/')"
    rm -f /tmp/llama8b-$q.gguf
  done
fi
