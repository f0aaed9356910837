#!/usr/bin/env bash
# Reasoning Studio against its peers on CPU, same machine, one command:
#   bash benches/peers/run.sh
#
#  1. a virtual environment at .venv-peers with torch, transformers, peft, safetensors, gguf and
#     llama-cpp-python (built from source by pip; the default index serves the CUDA build of
#     torch: ~2.8 GB to download, ~5.6 GB installed; set PEERS_PIP_ARGS, e.g. to an extra index
#     with a CPU-only torch, where one is reachable);
#  2. SmolLM2-135M-Instruct exported by the studio as a Hugging Face folder, and an all-f32 GGUF
#     of it (gguf_f32.py), so every engine computes in f32 from the same weights;
#  3. `studio bench` (every figure with the machine's limits), then, one after the other, the
#     peers on the same work: PyTorch (infer_torch.py: prompt, decode b1/b16, token statistics,
#     and torch's own matmul GFLOP/s and memory read GB/s; sft_torch.py: the SFT steps with PEFT),
#     llama.cpp (infer_llama_cpp.py: prompt and decode b1) and candle (the bench crate in
#     benches/peers/candle, built here: prompt and decode b1), in PEERS_ROUNDS interleaved
#     rounds; then one table of ratios from each engine's best round;
#  4. a 2-step LoRA run with the studio, its checkpoint exported as a PEFT adapter and as a merged
#     Hugging Face folder, and check_hf_export.py: transformers/PEFT load what the studio wrote and
#     score a text as the studio does (max |delta log-prob| <= 1e-4), for the base export too.
#
# PEERS_ISA=avx2 runs every engine on its AVX2 path, so that an AVX-512 machine measures the code
# AVX2-only CPUs run (on this machine's caches and memory, not theirs):
#   the studio: STUDIO_SIMD=avx2 for its kernels, and a binary without the gemm crate's AVX-512
#     kernels (`cargo build --release --no-default-features`, then copy target/release/studio to
#     target/release/studio-avx2, the default STUDIO here; the run stops if its gemm path is not
#     avx2);
#   PyTorch: ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2, ONEDNN_MAX_CPU_ISA=AVX2;
#   llama.cpp: llama-cpp-python built with GGML_NATIVE=OFF, GGML_AVX2=ON and no AVX-512, installed
#     under .cache/peers/llama-avx2 (built here the first time);
#   candle: as built (its gemm has no AVX-512 kernels unless asked for, and its own ops are
#     compiled for baseline x86-64).
# Each engine's JSON says which path it ran; the table prints them. Results go to
# .cache/peers/<native|avx2>/.
#
# Environment: STUDIO (default target/release/studio, not built here), PEERS_GGUF, PEERS_DATA,
# PEERS_STEPS (timed SFT steps, default 3), PEERS_THREADS (default 2), PEERS_ROUNDS (rounds of
# all the figures, default 2), PEERS_PIP_ARGS, PEERS_ISA (native or avx2),
# PEERS_SKIP_EXPORT_CHECK=1 to stop after the table.
# Writes under .cache/peers/. Exits non-zero when a check fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches/peers"
ISA="${PEERS_ISA:-native}"
case "$ISA" in
    native) STUDIO="${STUDIO:-$ROOT/target/release/studio}" ;;
    avx2)
        STUDIO="${STUDIO:-$ROOT/target/release/studio-avx2}"
        export STUDIO_SIMD=avx2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
        ;;
    *) echo "PEERS_ISA must be native or avx2, not '$ISA'" >&2; exit 2 ;;
esac
GGUF="${PEERS_GGUF:-$ROOT/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
DATA="${PEERS_DATA:-$(cd "$ROOT/.." && pwd)/shared/datasets/reasoning-gym-gsm_symbolic.jsonl}"
STEPS="${PEERS_STEPS:-3}"
THREADS="${PEERS_THREADS:-2}"
VENV="$ROOT/.venv-peers"
OUT="$ROOT/.cache/peers"
PY="$VENV/bin/python"

say() { printf '\n== %s\n' "$*"; }

# What every figure below ran on: the CPU, its vector instruction sets, and the kernels' path
# (STUDIO_SIMD caps it; `studio bench` prints the path it took).
say "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); \
$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f' | tr '\n' ' ')\
${STUDIO_SIMD:+(STUDIO_SIMD=$STUDIO_SIMD)}"
load() { cut -d' ' -f1-3 /proc/loadavg; }
[ -x "$STUDIO" ] || { echo "no studio binary at $STUDIO (build it: cargo build --release)" >&2; exit 2; }
if [ "$ISA" = avx2 ] && ! "$STUDIO" devices 2>/dev/null | grep -q 'gemm path: avx2'; then
    echo "$STUDIO runs the gemm crate's AVX-512 kernels; for PEERS_ISA=avx2 build it with" >&2
    echo "  cargo build --release --no-default-features && cp target/release/studio target/release/studio-avx2" >&2
    exit 2
fi
[ -f "$GGUF" ] || { echo "no model at $GGUF" >&2; exit 2; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false
T0=$(date +%s)

# ---- 1. the peers' environment ------------------------------------------------------------------
say "python environment ($VENV)"
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import torch, transformers, peft, safetensors, gguf, llama_cpp' 2>/dev/null; then
    t=$(date +%s)
    # shellcheck disable=SC2086
    "$PY" -m pip install ${PEERS_PIP_ARGS:-} torch transformers peft safetensors gguf llama-cpp-python==0.3.36
    echo "installed in $(( $(date +%s) - t )) s"
fi
LLAMA_PATH=""
if [ "$ISA" = avx2 ]; then
    LLAMA_PATH="$OUT/llama-avx2"
    if [ ! -d "$LLAMA_PATH/llama_cpp" ]; then
        t=$(date +%s)
        v=$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')
        CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF" \
            "$PY" -m pip install --no-deps --no-cache-dir --target "$LLAMA_PATH" "llama-cpp-python==$v"
        echo "llama-cpp-python $v without AVX-512 built in $(( $(date +%s) - t )) s"
    fi
fi
"$PY" -c 'import torch, transformers, peft, safetensors, llama_cpp; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, safetensors {safetensors.__version__}, llama-cpp-python {llama_cpp.__version__}")'
say "candle bench crate (benches/peers/candle, its own workspace)"
cargo build --release --quiet --manifest-path "$HERE/candle/Cargo.toml"
CANDLE="$HERE/candle/target/release/candle-peer"

# ---- 2. the base model as a Hugging Face folder -------------------------------------------------
say "export $(basename "$GGUF") as a Hugging Face folder"
mkdir -p "$OUT"
rm -rf "$OUT/smollm2-hf"
"$STUDIO" export --model "$GGUF" --format hf --out "$OUT/smollm2-hf"

say "all-f32 GGUF for llama.cpp"
[ -f "$OUT/smollm2-f32.gguf" ] || "$PY" "$HERE/gguf_f32.py" "$GGUF" "$OUT/smollm2-f32.gguf"

# ---- 3. the figures: studio, then each peer on the same work, one after the other -------------
# PEERS_ROUNDS rounds (default 2) of everything, interleaved, so a burst of load from the shared
# host lands on one round of one engine rather than deciding a ratio; compare.py keeps each
# engine's best figure (and the highest machine limit) over the rounds.
ROUNDS="${PEERS_ROUNDS:-2}"
RES="$OUT/$ISA"
mkdir -p "$RES"
rm -f "$RES"/bench-*.json
for r in $(seq 1 "$ROUNDS"); do
    say "round $r of $ROUNDS: studio bench (load before: $(load))"
    "$STUDIO" bench --model "$OUT/smollm2-hf" --json > "$RES/bench-studio.$r.json"
    say "round $r: PyTorch, inference and machine ceilings (load before: $(load))"
    "$PY" "$HERE/infer_torch.py" "$OUT/smollm2-hf" --threads "$THREADS" 2>/dev/null | tail -n 1 | tee "$RES/bench-torch-infer.$r.json"
    say "round $r: PyTorch + PEFT, SFT step, batch 4 x 256, $STEPS timed steps after one warm-up (load before: $(load))"
    "$PY" "$HERE/sft_torch.py" "$OUT/smollm2-hf" --steps "$STEPS" --threads "$THREADS" | tee "$RES/bench-torch.txt"
    tail -n 1 "$RES/bench-torch.txt" > "$RES/bench-torch.$r.json"
    say "round $r: llama.cpp (load before: $(load))"
    PYTHONPATH="$LLAMA_PATH" "$PY" "$HERE/infer_llama_cpp.py" "$OUT/smollm2-f32.gguf" --threads "$THREADS" | tee "$RES/bench-llama-cpp.$r.json"
    say "round $r: candle (load before: $(load))"
    RAYON_NUM_THREADS="$THREADS" "$CANDLE" "$OUT/smollm2-hf" | tee "$RES/bench-candle.$r.json"
done
echo "load after: $(load)"

"$PY" "$HERE/compare.py" "$RES" | tee "$RES/compare.txt"
[ "${PEERS_SKIP_EXPORT_CHECK:-0}" = 1 ] && { say "done in $(( $(date +%s) - T0 )) s"; exit 0; }

# ---- 4. what the studio exports loads in transformers and PEFT ---------------------------------
say "2-step LoRA run with the studio"
WS="$OUT/ws"
rm -rf "$WS" "$OUT/peft" "$OUT/merged-hf"
cat > "$OUT/peer-check.toml" <<EOF
name = "peer-check"
model = "$GGUF"
[data]
path = "$DATA"
holdout = 4
[sft]
max_steps = 2
batch_size = 2
max_seq_len = 128
lr = 2e-3
[sft.lora]
rank = 16
alpha = 32
[eval]
count = 1
max_new_tokens = 4
[checkpoint]
every = 0
EOF
"$STUDIO" --workspace "$WS" train "$OUT/peer-check.toml"
CKPT=$("$STUDIO" --workspace "$WS" runs show 1 --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["checkpoints"][0]["id"])')
"$STUDIO" --workspace "$WS" export --checkpoint "$CKPT" --format peft --out "$OUT/peft"
"$STUDIO" --workspace "$WS" export --checkpoint "$CKPT" --format hf --out "$OUT/merged-hf"

say "per-token log-probs: transformers/PEFT vs the studio"
TEXT='Question: A baker makes 12 loaves a day for 5 days and sells 48 of them. How many loaves are left?
Answer: 12*5=60 loaves, 60-48=12. The answer is 12.'
printf '%s' "$TEXT" > "$OUT/text.txt"
"$STUDIO" score --model "$GGUF" --text "$TEXT" --json > "$OUT/score-base.json"
"$STUDIO" score --model "$GGUF" --adapter "$OUT/peft" --text "$TEXT" --json > "$OUT/score-adapter.json"
"$STUDIO" score --model "$OUT/merged-hf" --text "$TEXT" --json > "$OUT/score-merged.json"
fail=0
check() {
    local out rc=0
    out=$("$PY" "$HERE/check_hf_export.py" --text-file "$OUT/text.txt" "$@" 2>"$OUT/check.err") || rc=$?
    printf '%s\n' "$out" | grep -v '^{' || true
    if [ "$rc" -ne 0 ]; then grep -v -i warn "$OUT/check.err" >&2 || true; fail=1; fi
}
check --label "base HF export (transformers) vs studio on the GGUF" \
    --model "$OUT/smollm2-hf" --scores "$OUT/score-base.json"
check --label "PEFT adapter (transformers+PEFT on the base export) vs studio GGUF+adapter" \
    --model "$OUT/smollm2-hf" --adapter "$OUT/peft" --scores "$OUT/score-adapter.json"
check --label "merged HF export (transformers) vs studio on the same folder" \
    --model "$OUT/merged-hf" --scores "$OUT/score-merged.json"
check --label "merged HF export (transformers) vs studio GGUF+adapter" \
    --model "$OUT/merged-hf" --scores "$OUT/score-adapter.json"

say "done in $(( $(date +%s) - T0 )) s"
exit "$fail"
