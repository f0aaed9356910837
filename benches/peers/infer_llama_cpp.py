#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) peer of `studio bench`: the 512-token prompt in one
pass (n_batch 512), then batch-1 greedy decode, 64 steps, on an f32 GGUF of the same model
(gguf_f32.py writes it), with the same text and thread count.

Usage: infer_llama_cpp.py MODEL.gguf [--threads 2] [--prompt 512] [--steps 64]
Prints one JSON line.
"""

import argparse
import json
import time

import llama_cpp
import numpy as np

TEXT = "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. "


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--steps", type=int, default=64)
    args = ap.parse_args()
    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=args.prompt + args.steps + 16,
        n_batch=args.prompt,
        n_ubatch=args.prompt,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    ids = llm.tokenize((TEXT * args.prompt).encode(), add_bos=False)[: args.prompt]

    def run(prompt, steps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        prefill = time.perf_counter() - t
        intervals = []
        for _ in range(steps):
            t = time.perf_counter()
            # the last position's logits, as llama.cpp computed them (not copied by eval)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            nxt = int(np.argmax(logits))
            llm.eval([nxt])
            intervals.append(time.perf_counter() - t)
        return prefill, intervals

    run(ids[:16], 2)  # warm-up
    prefill, intervals = run(ids, args.steps)
    # The median step, as `studio bench` reports it (robust to bursts of load on a shared host);
    # the mean is printed beside it.
    median = float(np.median(intervals))
    # The CPU features ggml was compiled for ("AVX512 = 1" or not): PEERS_ISA=avx2 loads a build
    # without AVX-512.
    info = llama_cpp.llama_print_system_info().decode()
    isa = "avx512" if "AVX512 = 1" in info else "avx2" if "AVX2 = 1" in info else "baseline"
    print(json.dumps({
        "peer": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "isa": isa,
        "threads": args.threads,
        "prompt_tokens": len(ids),
        "prompt_tokens_per_s": len(ids) / prefill,
        "decode_batch1_tokens_per_s": 1.0 / median,
        "decode_batch1_mean_tokens_per_s": len(intervals) / sum(intervals),
    }))


if __name__ == "__main__":
    main()
