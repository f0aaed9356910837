#!/usr/bin/env python3
"""The table run.sh prints: each figure of `studio bench` beside the peers' on the same work, and
studio/peer ratios (above 1 = the studio is faster). Reads the JSON files run.sh wrote.

Usage: compare.py OUT_DIR
"""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def rounds(stem):
    """Every round's JSON object of one engine (bench-STEM.N.json), in round order."""
    files = sorted(out.glob(f"bench-{stem}.*.json"), key=lambda p: int(p.name.split(".")[-2]))
    if not files:
        sys.exit(f"compare.py: no bench-{stem}.N.json in {out}")
    return [json.loads(f.read_text()) for f in files]


def best(objs):
    """One object with each numeric field at its best (largest) over the rounds."""
    merged = dict(objs[0])
    for o in objs[1:]:
        for k, v in o.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                merged[k] = max(merged.get(k, v), v)
    return merged


studio_rounds = rounds("studio")
torch_infer = best(rounds("torch-infer"))
torch_sft = best(rounds("torch"))
llama = best(rounds("llama-cpp"))
candle = best(rounds("candle"))
# The studio's figures: each one's best value, against the highest limit any round measured.
studio = dict(studio_rounds[0])
studio["machine"] = best([s["machine"] for s in studio_rounds])
figures = {}
for s in studio_rounds:
    for f in s["figures"]:
        old = figures.get(f["name"])
        figures[f["name"]] = {
            **f,
            "value": max(f["value"], old["value"]) if old else f["value"],
            "limit": max(f["limit"], old["limit"]) if old else f["limit"],
        }
# The quickest GRPO step of the rounds, whole (its parts are shares of one run).
studio["grpo_step"] = min((s["grpo_step"] for s in studio_rounds),
                          key=lambda g: g["rollout_s"] + g["reference_s"] + g["update_s"])
n_rounds = len(studio_rounds)
peers = {
    "torch": {**torch_infer, "sft_lora_tokens_per_s": torch_sft["lora_tokens_per_s"],
              "sft_full_tokens_per_s": torch_sft["full_tokens_per_s"]},
    "llama.cpp": llama,
    "candle": candle,
}
print(f"\nmachine, as measured: studio {studio['machine']['matmul_gflops']:.0f} GFLOP/s (gemm crate), "
      f"{studio['machine']['memory_read_gb_per_s']:.1f} GB/s read; "
      f"torch {torch_infer['matmul_gflops']:.0f} GFLOP/s, {torch_infer['memory_read_gb_per_s']:.1f} GB/s read; "
      f"{studio['threads']} threads everywhere; limits are the studio's probes; "
      f"each engine's best of {n_rounds} interleaved round(s)")
m = studio["machine"]
print(f"cpu: {m['cpu']}\n"
      f"paths: studio kernels {m.get('kernel_path', '?')}, studio gemm {m.get('gemm_path', '?')}; "
      f"torch ATen {torch_infer.get('isa', '?')}; llama.cpp {llama.get('isa', '?')}; "
      f"candle gemm crate defaults (AVX2+FMA kernels, no AVX-512)")
head = f"{'':<36} {'studio':>9} {'limit':>9} {'torch':>9} {'llama.cpp':>10} {'candle':>9}   studio/peer"
print("\n" + head)
for name, f in figures.items():
    row = f"{f['label']:<36} {f['value']:>9.1f} {f['limit']:>9.1f}"
    ratios = []
    for peer, width in (("torch", 9), ("llama.cpp", 10), ("candle", 9)):
        v = peers[peer].get(name)
        row += f" {v:>{width}.1f}" if v else f" {'-':>{width}}"
        if v:
            ratios.append(f"{f['value'] / v:.2f}x {peer}")
    print(f"{row}   {', '.join(ratios)}")
g = studio["grpo_step"]
total = g["rollout_s"] + g["reference_s"] + g["update_s"]
print(f"\nGRPO step (LoRA r16, beta 0.04), studio ({g['group']} rollouts x {g['new_tokens']} tokens): "
      f"rollouts {g['rollout_s']:.2f} s ({100 * g['rollout_s'] / total:.0f}%), "
      f"reference {g['reference_s']:.2f} s ({100 * g['reference_s'] / total:.0f}%), "
      f"update {g['update_s']:.2f} s ({100 * g['update_s'] / total:.0f}%)")
print(f"units: tokens/s, token statistics GB/s; torch {torch_infer['torch']}, "
      f"llama-cpp-python {llama['llama_cpp_python']}, candle {candle['candle']}")
