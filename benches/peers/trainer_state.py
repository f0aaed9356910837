"""Writes tests/data/trainer_state.json: the state Hugging Face transformers' Trainer saves,
from a real 40-step run of a small randomly initialised Llama on synthetic token sequences
(no download). `studio import` is tested against it.

    .venv-peers/bin/python benches/peers/trainer_state.py
"""

import pathlib
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "trainer_state.json"


class Sequences(torch.utils.data.Dataset):
    """Counting sequences mod 97: learnable, so the loss falls."""

    def __init__(self, n, length=32):
        g = torch.Generator().manual_seed(0)
        starts = torch.randint(0, 97, (n,), generator=g)
        self.rows = [(s + torch.arange(length)) % 97 for s in starts]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        ids = self.rows[i]
        return {"input_ids": ids, "labels": ids.clone()}


def main():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=40, per_device_train_batch_size=8, learning_rate=3e-3,
            warmup_steps=4, logging_steps=1, eval_strategy="steps", eval_steps=10,
            per_device_eval_batch_size=8, save_strategy="no", report_to=[], use_cpu=True, seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=Sequences(512),
                          eval_dataset=Sequences(32))
        trainer.train()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        trainer.state.save_to_json(str(OUT))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
