#!/usr/bin/env bash
# Reasoning Studio against its peers (PyTorch + transformers + PEFT), on CPU, in one command:
#   bash benches/peers/run.sh
#
#  1. a virtual environment at .venv-peers with torch, transformers, peft and safetensors
#     (the default index serves the CUDA build of torch: ~2.8 GB to download, ~5.6 GB installed;
#      set PEERS_PIP_ARGS, e.g. to an extra index with a CPU-only torch, where one is reachable);
#  2. SmolLM2-135M-Instruct exported by the studio as a Hugging Face folder;
#  3. the SFT step, `studio bench train` and sft_torch.py on that same folder, one after the other,
#     and the ratios studio/torch for LoRA r16 and full fine-tuning;
#  4. a 2-step LoRA run with the studio, its checkpoint exported as a PEFT adapter and as a merged
#     Hugging Face folder, and check_hf_export.py: transformers/PEFT load what the studio wrote and
#     score a text as the studio does (max |delta log-prob| <= 1e-4), for the base export too.
#
# Environment: STUDIO (default target/release/studio, not built here), PEERS_GGUF, PEERS_DATA,
# PEERS_STEPS (timed steps, default 3), PEERS_THREADS (default 2), PEERS_PIP_ARGS.
# Writes under .cache/peers/. Exits non-zero when a check fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches/peers"
STUDIO="${STUDIO:-$ROOT/target/release/studio}"
GGUF="${PEERS_GGUF:-$ROOT/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
DATA="${PEERS_DATA:-$(cd "$ROOT/.." && pwd)/shared/datasets/reasoning-gym-gsm_symbolic.jsonl}"
STEPS="${PEERS_STEPS:-3}"
THREADS="${PEERS_THREADS:-2}"
VENV="$ROOT/.venv-peers"
OUT="$ROOT/.cache/peers"
PY="$VENV/bin/python"

say() { printf '\n== %s\n' "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
[ -x "$STUDIO" ] || { echo "no studio binary at $STUDIO (build it: cargo build --release)" >&2; exit 2; }
[ -f "$GGUF" ] || { echo "no model at $GGUF" >&2; exit 2; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false
T0=$(date +%s)

# ---- 1. the peers' environment ------------------------------------------------------------------
say "python environment ($VENV)"
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import torch, transformers, peft, safetensors' 2>/dev/null; then
    t=$(date +%s)
    # shellcheck disable=SC2086
    "$PY" -m pip install ${PEERS_PIP_ARGS:-} torch transformers peft safetensors
    echo "installed in $(( $(date +%s) - t )) s"
fi
"$PY" -c 'import torch, transformers, peft, safetensors; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, safetensors {safetensors.__version__}")'

# ---- 2. the base model as a Hugging Face folder -------------------------------------------------
say "export $(basename "$GGUF") as a Hugging Face folder"
mkdir -p "$OUT"
rm -rf "$OUT/smollm2-hf"
"$STUDIO" export --model "$GGUF" --format hf --out "$OUT/smollm2-hf"

# ---- 3. the SFT step: studio vs torch -----------------------------------------------------------
say "SFT step, batch 4 x 256, $STEPS timed steps after one warm-up (load before: $(load))"
"$STUDIO" bench train --model "$OUT/smollm2-hf" --steps "$STEPS" --json | tee "$OUT/bench-studio.json"
echo "load after studio: $(load)"
"$PY" "$HERE/sft_torch.py" "$OUT/smollm2-hf" --steps "$STEPS" --threads "$THREADS" | tee "$OUT/bench-torch.txt"
echo "load after torch: $(load)"
tail -n 1 "$OUT/bench-torch.txt" > "$OUT/bench-torch.json"
"$PY" - "$OUT/bench-studio.json" "$OUT/bench-torch.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1])); t = json.load(open(sys.argv[2]))
print(f"\n{'tokens/s':<10} {'studio':>10} {'torch':>10} {'studio/torch':>13}")
for mode, name in (("lora", "LoRA r16"), ("full", "full")):
    a, b = s[f"{mode}_tokens_per_s"], t[f"{mode}_tokens_per_s"]
    print(f"{name:<10} {a:>10.1f} {b:>10.1f} {a / b:>12.2f}x")
print(f"(torch {t['torch']}, transformers {t['transformers']}, peft {t['peft']}, {t['threads']} threads)")
EOF

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
