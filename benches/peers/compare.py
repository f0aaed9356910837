#!/usr/bin/env python3
"""The table run.sh prints: each figure of `studio bench` beside the peers' on the same work, and
studio/peer ratios (above 1 = the studio is faster). Reads the JSON files run.sh wrote.

Usage: compare.py OUT_DIR
"""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
studio = json.loads((out / "bench-studio.json").read_text())
torch_infer = json.loads((out / "bench-torch-infer.json").read_text())
torch_sft = json.loads((out / "bench-torch.json").read_text())
llama = json.loads((out / "bench-llama-cpp.json").read_text())
candle = json.loads((out / "bench-candle.json").read_text())
figures = {f["name"]: f for f in studio["figures"]}
peers = {
    "torch": {**torch_infer, "sft_lora_tokens_per_s": torch_sft["lora_tokens_per_s"],
              "sft_full_tokens_per_s": torch_sft["full_tokens_per_s"]},
    "llama.cpp": llama,
    "candle": candle,
}

print(f"\nmachine, as measured: studio {studio['machine']['matmul_gflops']:.0f} GFLOP/s (gemm crate), "
      f"{studio['machine']['memory_read_gb_per_s']:.1f} GB/s read; "
      f"torch {torch_infer['matmul_gflops']:.0f} GFLOP/s, {torch_infer['memory_read_gb_per_s']:.1f} GB/s read; "
      f"{studio['threads']} threads everywhere; limits are the studio's probes")
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
print(f"\nGRPO-shaped step, studio ({g['group']} rollouts x {g['new_tokens']} tokens): "
      f"rollouts {g['rollout_s']:.2f} s ({100 * g['rollout_s'] / total:.0f}%), "
      f"reference {g['reference_s']:.2f} s ({100 * g['reference_s'] / total:.0f}%), "
      f"update {g['update_s']:.2f} s ({100 * g['update_s'] / total:.0f}%)")
print(f"units: tokens/s, token statistics GB/s; torch {torch_infer['torch']}, "
      f"llama-cpp-python {llama['llama_cpp_python']}, candle {candle['candle']}")
