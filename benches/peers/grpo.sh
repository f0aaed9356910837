#!/usr/bin/env bash
# A GRPO step of the studio against TRL's GRPOTrainer on CPU, same machine, same work:
#   bash benches/peers/grpo.sh
#
#  1. the peers' environment at .venv-peers (as run.sh makes it; this script adds trl when it
#     is missing) and SmolLM2-135M-Instruct exported by the studio as a Hugging Face folder;
#  2. `studio bench grpo` on the tiny reasoner and on that folder: 8 prompts x 8 completions of
#     at most 128 tokens, LoRA r16, beta 0.04, the first step a warm-up (the split of each step
#     into rollout, scoring and update, and rollout tokens/s against batch-16 decode);
#  3. grpo_trl.py: TRL's GRPOTrainer with PEFT on the same folder, the studio's prompts and the
#     same settings, its steps split the same way;
#  4. the ratios.
#
# Environment: STUDIO (default target/release/studio, not built here), PEERS_GGUF,
# PEERS_THREADS (default 2), PEERS_GRPO_STEPS (steps per side, the first a warm-up; default 2).
# Writes under .cache/peers/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches/peers"
STUDIO="${STUDIO:-$ROOT/target/release/studio}"
GGUF="${PEERS_GGUF:-$ROOT/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${PEERS_THREADS:-2}"
STEPS="${PEERS_GRPO_STEPS:-2}"
VENV="$ROOT/.venv-peers"
OUT="$ROOT/.cache/peers"
PY="$VENV/bin/python"
say() { printf '\n== %s\n' "$*"; }
[ -x "$STUDIO" ] || { echo "no studio binary at $STUDIO (build it: cargo build --release)" >&2; exit 2; }
[ -f "$GGUF" ] || { echo "no model at $GGUF" >&2; exit 2; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false
T0=$(date +%s)

say "python environment ($VENV)"
[ -x "$PY" ] || python3 -m venv "$VENV"
if ! "$PY" -c 'import torch, transformers, peft, trl' 2>/dev/null; then
    # shellcheck disable=SC2086
    "$PY" -m pip install ${PEERS_PIP_ARGS:-} torch transformers peft trl safetensors
fi
"$PY" -c 'import torch, transformers, peft, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, trl {trl.__version__}")'

mkdir -p "$OUT"
HF="$OUT/smollm2-hf"
if [ ! -f "$HF/config.json" ]; then
    say "export $(basename "$GGUF") as a Hugging Face folder"
    "$STUDIO" export --model "$GGUF" --format hf --out "$HF"
fi

say "studio bench grpo ($STEPS steps per model, the first a warm-up)"
RAYON_NUM_THREADS="$THREADS" "$STUDIO" bench grpo --model builtin:tiny-reasoner --model "$HF" \
    --steps "$STEPS" --json > "$OUT/grpo-studio.json"
"$PY" -m json.tool "$OUT/grpo-studio.json" | grep -v '^            "' | head -60

say "TRL GRPOTrainer on the same folder, prompts and settings"
"$PY" "$HERE/grpo_trl.py" "$HF" "$OUT/grpo-studio.json" --steps "$STEPS" --threads "$THREADS" \
    2> "$OUT/grpo-trl.log" | tail -n 1 | tee "$OUT/grpo-trl.json"

say "ratios"
"$PY" - "$OUT/grpo-studio.json" "$OUT/grpo-trl.json" "$HF" <<'PY'
import json, sys
studio = {r["model"]: r for r in json.load(open(sys.argv[1]))["grpo"]}
trl = json.load(open(sys.argv[2]))
hf = sys.argv[3]
for name, r in studio.items():
    print(f"studio, {name}: step {r['step_s']:.2f} s = rollout {r['rollout_s']:.2f} + scoring "
          f"{r['scoring_s']:.2f} + update {r['update_s']:.2f}; {r['completion_tokens_mean']:.0f} "
          f"completion tokens per rollout; rollout {r['rollout_tokens_per_s']:.0f} tokens/s = "
          f"{100 * r['rollout_share_of_decode_batch16']:.0f} % of its batch-16 decode "
          f"({r['decode_batch16_tokens_per_s']:.0f} tokens/s)")
s = studio[hf]
print(f"TRL, {hf}: step {trl['step_s']:.2f} s = rollout {trl['rollout_s']:.2f} + scoring "
      f"{trl['scoring_s']:.2f} + update {trl['update_s']:.2f}; {trl['completion_tokens_mean']:.0f} "
      f"completion tokens per rollout; rollout {trl['rollout_tokens_per_s']:.0f} tokens/s ({trl['peer']})")
# Completions stop at their end token, so the two sides' steps hold different token counts:
# the ratio per completion token is the fair one when the mean lengths differ.
per_token = lambda r: r["step_s"] / max(1e-9, r["completion_tokens_mean"])
print(f"GRPO step, studio/TRL speed: {trl['step_s'] / s['step_s']:.2f}x per step, "
      f"{per_token(trl) / per_token(s):.2f}x per completion token; "
      f"rollout {s['rollout_tokens_per_s'] / trl['rollout_tokens_per_s']:.2f}x, "
      f"update {trl['update_s'] / s['update_s']:.2f}x, scoring {trl['scoring_s'] / max(1e-9, s['scoring_s']):.2f}x")
PY
say "done in $(( $(date +%s) - T0 )) s"
