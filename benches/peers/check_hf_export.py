#!/usr/bin/env python3
"""Check that a folder exported by the studio loads in transformers (and, with
--adapter, a LoRA adapter exported by the studio loads in PEFT) and scores a
text as the studio does.

The reference is the studio's `studio score ... --text TEXT --json` output saved
to a file: {"model", "tokens": [{"id", "text", "logprob", "entropy", "top"}]},
token 0 with logprob null. Here the text is tokenized with the folder's own
tokenizer (special tokens added by its post-processor, as the studio does), the
ids must equal the studio's, and the per-token log-probs
(log_softmax(logits[i-1])[id[i]]) must agree within --tol.

Usage: check_hf_export.py --model HF_DIR [--adapter PEFT_DIR] --scores studio.json
                          (--text TEXT | --text-file FILE) [--tol 1e-4] [--label NAME]
Exit status: 0 when max |delta logprob| <= tol and the ids agree; 1 otherwise.
"""

import argparse
import json
import sys

import torch
import transformers
from transformers.utils import logging as transformers_logging
from transformers import AutoModelForCausalLM, AutoTokenizer

transformers_logging.disable_progress_bar()
# transformers 5 renamed from_pretrained's `torch_dtype` to `dtype` (the old name still works, with a warning).
F32 = {("dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"): torch.float32}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face folder (exported by the studio)")
    ap.add_argument("--adapter", help="PEFT adapter folder (exported by the studio), applied to --model")
    ap.add_argument("--scores", required=True, help="JSON file written by `studio score --json`")
    text = ap.add_mutually_exclusive_group(required=True)
    text.add_argument("--text")
    text.add_argument("--text-file")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--label", default=None, help="name printed in the result line")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    label = args.label or (f"{args.model} + {args.adapter}" if args.adapter else args.model)

    torch.set_num_threads(args.threads)
    if args.text_file:
        with open(args.text_file, encoding="utf-8") as f:
            text_value = f.read()
    else:
        text_value = args.text
    with open(args.scores, encoding="utf-8") as f:
        studio = json.load(f)
    studio_ids = [t["id"] for t in studio["tokens"]]
    studio_lp = [t["logprob"] for t in studio["tokens"]]

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    ids = tokenizer(text_value, add_special_tokens=True)["input_ids"]
    if ids != studio_ids:
        print(f"FAIL {label}: token ids differ", file=sys.stderr)
        print(f"  transformers ({len(ids)}): {ids}", file=sys.stderr)
        print(f"  studio       ({len(studio_ids)}): {studio_ids}", file=sys.stderr)
        return 1

    model = AutoModelForCausalLM.from_pretrained(args.model, **F32)
    if args.adapter:
        import peft

        model = peft.PeftModel.from_pretrained(model, args.adapter)
        loaded = sum(1 for n, _ in model.named_modules() if n.endswith("lora_A"))
        print(f"PEFT adapter loaded: {loaded} LoRA modules", file=sys.stderr)
    model.eval()

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    ours = [None] + [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]

    max_delta, at = 0.0, None
    for i in range(1, len(ids)):
        if studio_lp[i] is None:
            print(f"FAIL {label}: the studio gave no log-prob for token {i}", file=sys.stderr)
            return 1
        d = abs(ours[i] - studio_lp[i])
        if d > max_delta:
            max_delta, at = d, i
    mean_lp = sum(ours[1:]) / max(len(ids) - 1, 1)
    ok = max_delta <= args.tol
    where = f" at token {at} ({studio['tokens'][at]['text']!r}: transformers {ours[at]:.6f}, studio {studio_lp[at]:.6f})" if at else ""
    print(
        f"{'ok  ' if ok else 'FAIL'} {label}: {len(ids)} tokens, ids equal, mean logprob {mean_lp:.4f}, "
        f"max |delta logprob| = {max_delta:.3e} (tol {args.tol:g}){where}"
    )
    print(json.dumps({"check": label, "tokens": len(ids), "max_abs_delta_logprob": max_delta, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
