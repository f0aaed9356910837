"""TRL's GRPOTrainer on CPU: the peer of `studio bench grpo`.

    .venv-peers/bin/python benches/peers/grpo_trl.py HF_DIR STUDIO_BENCH.json [--steps 2] [--threads 2]

Runs GRPO steps on the Hugging Face folder HF_DIR with the settings the studio's benchmark
printed in STUDIO_BENCH.json (`studio bench grpo --json`, the entry whose model is HF_DIR): the
same prompts (the studio's first step, repeated), prompts per step, completions per prompt,
completion length, temperature 1, beta, LoRA rank (alpha 2 x rank on the four attention
projections), loss dapo, micro-batches of 16 sequences, and accuracy + format rewards weighted
1 and 0.5. Each optimizer step is split as the studio splits its own:

  rollout  = time inside `_generate_single_turn` (transformers' generate on the policy),
  scoring  = the rest of `_generate_and_score_completions` (reference log-probs, rewards,
             advantages),
  update   = the rest of the step (forward, backward and AdamW over the micro-batches).

The first step warms up and is not counted. Prints one JSON line last.
"""

import argparse
import json
import re
import sys
import time

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
import trl

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
FORMAT = re.compile(r"(?s)<think>.*</think>\s*<answer>.*</answer>")


def text_of(completion):
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return completion[-1]["content"]
    return completion


def accuracy(completions, answer, **_):
    out = []
    for c, a in zip(completions, answer):
        m = ANSWER.findall(text_of(c))
        out.append(1.0 if m and m[-1].strip() == str(a).strip() else 0.0)
    return out


def format_reward(completions, **_):
    return [1.0 if FORMAT.search(text_of(c)) else 0.0 for c in completions]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("hf_dir")
    p.add_argument("studio_json")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=".cache/peers/trl-grpo")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)

    with open(a.studio_json) as f:
        reports = json.load(f)["grpo"]
    wanted = [r for r in reports if r["model"].rstrip("/") == a.hf_dir.rstrip("/")]
    if not wanted:
        sys.exit(f"{a.studio_json} has no entry for model {a.hf_dir}; models: {[r['model'] for r in reports]}")
    s = wanted[0]
    prompts_per_step, group = s["prompts_per_step"], s["num_generations"]
    micro = 16
    sequences = prompts_per_step * group
    if sequences % micro:
        sys.exit(f"{sequences} sequences per step do not split into micro-batches of {micro}")
    if not s["training"].startswith("lora"):
        sys.exit("this peer runs LoRA only")
    rank = int(s["training"].split("r")[-1])

    # The studio's prompts, with an answer column the accuracy reward reads (none matches: the
    # timing does not depend on it, and both sides score every completion).
    prompts = (s["prompts"] * (a.steps + 1))[: prompts_per_step * (a.steps + 1)]
    tokenizer = AutoTokenizer.from_pretrained(a.hf_dir)
    # Conversational prompts go through the model's chat template, as the studio's do; a model
    # without one gets the plain text.
    chat = tokenizer.chat_template is not None
    data = Dataset.from_list([
        {"prompt": [{"role": "user", "content": q}] if chat else q, "answer": "-"} for q in prompts
    ])
    model = AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.float32)
    config = GRPOConfig(
        output_dir=a.out,
        use_cpu=True,
        bf16=False,
        fp16=False,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=sequences // micro,
        num_generations=group,
        max_completion_length=s["max_completion_length"],
        temperature=1.0,
        top_p=1.0,
        beta=s["beta"],
        loss_type="dapo",
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        adam_beta2=0.99,
        max_grad_norm=1.0,
        max_steps=a.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        reward_weights=[1.0, 0.5],
        seed=7,
        dataloader_num_workers=0,
        # TRL turns activation checkpointing on by default; the studio keeps activations, so
        # the update does one forward, not two.
        gradient_checkpointing=False,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[accuracy, format_reward],
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        ),
    )

    clock = {"rollout": 0.0, "generate_and_score": 0.0}
    lengths = []

    def timed(name, f):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = f(*args, **kwargs)
            clock[name] += time.perf_counter() - t
            if name == "rollout":
                lengths.extend(len(c) for c in out[0])
            return out

        return wrapper

    trainer._generate_single_turn = timed("rollout", trainer._generate_single_turn)
    trainer._generate_and_score_completions = timed(
        "generate_and_score", trainer._generate_and_score_completions
    )

    steps = []

    class Split(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()
            clock["rollout"] = clock["generate_and_score"] = 0.0
            lengths.clear()

        def on_step_end(self, args, state, control, **kw):
            total = time.perf_counter() - self.t
            r, gs = clock["rollout"], clock["generate_and_score"]
            steps.append({
                "step_s": total,
                "rollout_s": r,
                "scoring_s": gs - r,
                "update_s": total - gs,
                "completion_tokens": sum(lengths),
                "completion_tokens_mean": sum(lengths) / max(1, len(lengths)),
            })
            print(f"step {state.global_step}: {steps[-1]}", file=sys.stderr, flush=True)

    trainer.add_callback(Split())
    trainer.train()
    timed_steps = steps[1:] or steps
    mean = lambda k: sum(x[k] for x in timed_steps) / len(timed_steps)
    rollout_s = mean("rollout_s")
    print(json.dumps({
        "peer": f"trl {trl.__version__}, torch {torch.__version__}",
        "model": a.hf_dir,
        "threads": a.threads,
        "timed_steps": len(timed_steps),
        "prompts_per_step": prompts_per_step,
        "num_generations": group,
        "max_completion_length": s["max_completion_length"],
        "beta": s["beta"],
        "lora_rank": rank,
        "step_s": mean("step_s"),
        "rollout_s": rollout_s,
        "scoring_s": mean("scoring_s"),
        "update_s": mean("update_s"),
        "completion_tokens_mean": mean("completion_tokens_mean"),
        "rollout_tokens_per_s": sum(x["completion_tokens"] for x in timed_steps)
        / max(1e-9, sum(x["rollout_s"] for x in timed_steps)),
    }))


if __name__ == "__main__":
    main()
