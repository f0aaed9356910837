#!/usr/bin/env python3
"""PyTorch + PEFT peer of `studio bench train`: the same SFT step, on CPU, in tokens/s.

Same model folder, same batch (4 x 256 deterministic ids
ids[r][t] = (r*7919 + t*104729) % vocab), causal-LM loss on every position
(labels = input ids; transformers shifts them internally, so 255 predicted
positions per row, as in the studio), AdamW (lr 1e-5, betas 0.9/0.999,
eps 1e-8, weight decay 0), global grad-norm clip 1.0, one warm-up step then
N timed steps, the model reloaded for each mode. tokens/s = batch*seq_len / mean
step seconds (forward + backward + clip + optimizer step), as the studio counts.

Usage: sft_torch.py MODEL_DIR [--steps 3] [--batch 4] [--seq-len 256]
                    [--mode full|lora] [--threads 2]
Prints a small table, then one JSON line.
"""

import argparse
import json
import sys
import time

import peft
import torch
import transformers
from transformers.utils import logging as transformers_logging
from transformers import AutoModelForCausalLM, AutoTokenizer

transformers_logging.disable_progress_bar()
# transformers 5 renamed from_pretrained's `torch_dtype` to `dtype` (the old name still works, with a warning).
F32 = {("dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"): torch.float32}


def make_batch(batch: int, seq_len: int, vocab: int) -> torch.Tensor:
    rows = [[(r * 7919 + t * 104729) % vocab for t in range(seq_len)] for r in range(batch)]
    return torch.tensor(rows, dtype=torch.long)


def load(model_dir: str, lora: bool):
    model = AutoModelForCausalLM.from_pretrained(model_dir, **F32)
    if lora:
        config = peft.LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = peft.get_peft_model(model, config)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    return model


def time_steps(model_dir: str, lora: bool, ids: torch.Tensor, steps: int) -> tuple[float, int, float]:
    model = load(model_dir, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    times = []
    loss_value = float("nan")
    for step in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        elapsed = time.perf_counter() - start
        loss_value = out.loss.item()
        if step > 0:
            times.append(elapsed)
    del model, opt
    return sum(times) / max(len(times), 1), n_trainable, loss_value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--mode", choices=["full", "lora"], default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    config = transformers.AutoConfig.from_pretrained(args.model_dir)
    vocab = min(len(tokenizer), config.vocab_size)
    ids = make_batch(args.batch, args.seq_len, vocab)
    tokens = args.batch * args.seq_len

    modes = [args.mode] if args.mode else ["lora", "full"]
    result: dict = {}
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"{torch.get_num_threads()} threads, vocab {vocab}",
        file=sys.stderr,
    )
    for mode in modes:
        secs, n_trainable, loss = time_steps(args.model_dir, mode == "lora", ids, args.steps)
        result[f"{mode}_step_s"] = secs
        result[f"{mode}_tokens_per_s"] = tokens / secs
        label = "LoRA r16 (attention)" if mode == "lora" else "full fine-tuning"
        print(
            f"torch SFT {label:<21} batch {args.batch} x {args.seq_len}: {secs:7.3f} s/step, "
            f"{tokens / secs:8.1f} tokens/s  ({n_trainable:,} trainable, last loss {loss:.4f})"
        )
    result.update(
        {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "threads": torch.get_num_threads(),
            "batch": args.batch,
            "seq_len": args.seq_len,
            "steps": args.steps,
        }
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
