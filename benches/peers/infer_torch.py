#!/usr/bin/env python3
"""PyTorch + transformers peer of `studio bench` for everything but SFT (sft_torch.py does that):
the 512-token prompt in one forward pass, decode with the KV cache at batch 1 and 16 (greedy,
64 steps; the batch-16 prompt is its first 64 tokens, as the studio does), token statistics
(log-softmax, entropy, top-5) over 64 x vocab logits, and the machine's ceilings as torch sees
them: f32 matrix product GFLOP/s (512x576 . 576x1536, SmolLM2's MLP shape) and memory read GB/s
(sum over 1 GiB).

Usage: infer_torch.py MODEL_DIR [--threads 2] [--prompt 512] [--steps 64] [--batch 16]
Prints one JSON line.
"""

import argparse
import json
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

F32 = {("dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"): torch.float32}
TEXT = "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. "


def fastest(runs, f):
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def decode(model, ids, steps):
    """Seconds for the prompt pass, and the median of `steps` greedy decode steps after it
    (as `studio bench` reports decode: robust to bursts of load on a shared host)."""
    t = time.perf_counter()
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - t
    past = out.past_key_values
    nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
    intervals = []
    for _ in range(steps):
        t = time.perf_counter()
        out = model(input_ids=nxt, past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        intervals.append(time.perf_counter() - t)
    return prefill, sorted(intervals)[len(intervals) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    a, b = torch.randn(512, 576), torch.randn(576, 1536)
    c = torch.empty(512, 1536)
    torch.matmul(a, b, out=c)
    gflops = 2 * 512 * 576 * 1536 / fastest(5, lambda: torch.matmul(a, b, out=c)) / 1e9
    big = torch.ones(1 << 28)  # 1 GiB of f32
    gbps = big.numel() * 4 / fastest(3, lambda: big.sum()) / 1e9
    del big

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, **F32).eval()
    ids = tok(TEXT * args.prompt, add_special_tokens=False, return_tensors="pt").input_ids[:, : args.prompt]
    with torch.inference_mode():
        decode(model, ids[:, :16], 2)  # warm-up
        prefill, dec1 = decode(model, ids, args.steps)
        short = ids[:, :64].repeat(args.batch, 1)
        _, dec_b = decode(model, short, args.steps)

        vocab = model.config.vocab_size
        logits = torch.randn(64, vocab) * 5

        def stats():
            logp = torch.log_softmax(logits, dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)
            top = logp.topk(5, dim=-1)
            return entropy, top

        stats()
        stats_s = fastest(5, stats)

    print(json.dumps({
        "peer": "torch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        # ATen's vectorized kernels: "AVX512" or "AVX2" (ATEN_CPU_CAPABILITY caps it).
        "isa": torch.backends.cpu.get_cpu_capability().lower(),
        "threads": args.threads,
        "matmul_gflops": gflops,
        "memory_read_gb_per_s": gbps,
        "prompt_tokens": int(ids.shape[1]),
        "prompt_tokens_per_s": ids.shape[1] / prefill,
        "decode_batch1_tokens_per_s": 1.0 / dec1,
        "decode_batch": args.batch,
        "decode_batched_tokens_per_s": args.batch / dec_b,
        "token_stats_gb_per_s": logits.numel() * 4 / stats_s / 1e9,
    }))


if __name__ == "__main__":
    main()
