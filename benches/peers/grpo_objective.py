"""Reference values for the GRPO-family objective, written to tests/fixtures/grpo_objective.json.

Rerun (from the repository root):

    .venv-fixtures/bin/python benches/peers/grpo_objective.py

Needs only torch (no TRL). Everything is computed in float64 with torch autograd. The formulas
are those of TRL's GRPOTrainer (advantages in `_generate_and_score_completions`, the loss and
the clip metrics in `_compute_loss`), written out directly here.

Fixed inputs (also written into the JSON): 2 prompts x G = 3 generations = 6 sequences, max
completion length T = 5, completion lengths [5, 3, 4, 1, 5, 2] (mask[i, t] = 1 for t < len_i,
else 0), rewards [1.0, 0.0, 0.5, 2.0, 2.0, 2.0] (the second group is all equal, so its std is 0
and its advantages are exactly 0; sequence 2 equals its group mean, so its advantage is exactly
0 as well). logp (current policy, the variable we differentiate), old_logp (rollout policy) and
ref_logp (reference policy) are [6][5] arrays of negative numbers, rounded to 4 decimals: old_logp
is seeded uniform in [-3.3, -0.7], logp = old_logp + log(ratio), ref_logp = min(logp + seeded
uniform in [-0.8, 0.8], -0.05). The ratios of sequences 2..5 are seeded uniform in [0.5, 1.8]
(redrawn when within 0.02 of a clip boundary); those of sequences 0 (A > 0) and 1
(A < 0) are hand-picked so that, with epsilon 0.2 / epsilon_high 0.2 or 0.28 / delta 1.5, low
clipping, high clipping and delta clipping all happen at token level, and the sequence-level
(GSPO) ratio of sequence 0 is above 1.28 and that of sequence 1 below 0.8. The script asserts
that no ratio lies within 0.01 of a clip boundary, so the gradient is far from any kink. Values
at masked positions are arbitrary but present.

Formulas (A = advantages, one per sequence, broadcast over tokens as A[:, None]):

  mean_g = rewards.view(-1, G).mean(1).repeat_interleave(G)
  scale_rewards "group": std = rewards.view(-1, G).std(1).repeat_interleave(G)   (unbiased)
                "batch": std = rewards.std()                                      (unbiased)
                "none":  no division
  A = rewards - mean_g;  unless "none": A = A / (std + 1e-4)

  log_ratio = logp - old_logp
  importance_sampling_level "token":    log_w = log_ratio
                            "sequence": log_w = ((log_ratio * mask).sum(-1)
                                                 / mask.sum(-1).clamp(min=1)).unsqueeze(-1)
                                        (GSPO; one weight per sequence, broadcast over its
                                        tokens; the gradient flows through the mean)
  coef_1 = exp(log_w)
  coef_2 = clamp(coef_1, 1 - epsilon, 1 + epsilon_high)
  loss1  = (clamp(coef_1, max=delta) if delta is not None else coef_1) * A[:, None]
  loss2  = coef_2 * A[:, None]
  ptl    = -min(loss1, loss2)
  beta != 0: kl = exp(ref_logp - logp) - (ref_logp - logp) - 1   (k3 estimator)
             ptl = ptl + beta * kl

  loss_type "grpo":    ((ptl * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
            "bnpo":    (ptl * mask).sum() / mask.sum().clamp(min=1)
            "dr_grpo": (ptl * mask).sum() / (num_sequences * T)
            "dapo":    (ptl * mask).sum() / (number of completion tokens in the whole generation
                       batch). With one batch, one process and no gradient accumulation that
                       count is mask.sum(), so dapo equals bnpo here (the script asserts it).
  (gradient accumulation normalizers are 1: one batch, one step.)

  grad_logp = d loss / d logp (autograd; exactly 0 at masked positions).

  Metrics (the clip tests use coef_1 before the delta clamp; with delta 1.5 > 1 + epsilon_high
  the result is the same as TRL, which tests the clamped coef_1):
    is_low    = (coef_1 < 1 - epsilon) & (A < 0)
    is_high   = (coef_1 > 1 + epsilon_high) & (A > 0)
    is_region = is_low | is_high
    clip_ratio_{low,high,region} = masked_batch_mean(x), as TRL 1.16 logs them: at token level
                                   (x * mask).sum() / mask.sum(); at sequence level x is (B, 1)
                                   and the mean is over sequences, each counting once
    kl = (kl * mask).sum() / mask.sum()   (the k3 KL of logp against ref_logp; computed for
                                           beta 0 too)

Cases: the full product loss_type {grpo, bnpo, dr_grpo, dapo} x scale_rewards {group, batch,
none} x clip {symmetric: epsilon 0.2, epsilon_high 0.2, delta null; clip_higher: 0.2, 0.28,
null; two_sided: 0.2, 0.28, 1.5} x importance_sampling_level {token, sequence} x beta {0.0,
0.04} = 144 cases.

Also "kl_k3": for (logp, ref) in (-1,-1), (-1,-2), (-2,-1), (-0.1,-3), (-3,-0.1), the k3 value
exp(ref - logp) - (ref - logp) - 1 and its derivative with respect to logp (= 1 - exp(ref -
logp)), both by torch autograd.

JSON layout:
  {"generator", "torch", "G", "T", "lengths", "rewards", "logp", "old_logp", "ref_logp",
   "cases": [{"loss_type", "scale_rewards", "clip", "epsilon", "epsilon_high", "delta",
              "importance_sampling_level", "beta", "advantages", "loss", "grad_logp",
              "clip_ratio_low", "clip_ratio_high", "clip_ratio_region", "kl"}],
   "kl_k3": [{"logp", "ref", "kl", "grad_logp"}]}
"""

import itertools
import json
import math
import os
import random

import torch

G = 3
T = 5
LENGTHS = [5, 3, 4, 1, 5, 2]
REWARDS = [1.0, 0.0, 0.5, 2.0, 2.0, 2.0]
SEED = 20240611

CLIPS = {
    "symmetric": (0.2, 0.2, None),
    "clip_higher": (0.2, 0.28, None),
    "two_sided": (0.2, 0.28, 1.5),
}
LOSS_TYPES = ["grpo", "bnpo", "dr_grpo", "dapo"]
SCALES = ["group", "batch", "none"]
LEVELS = ["token", "sequence"]
BETAS = [0.0, 0.04]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "grpo_objective.json")


def make_inputs():
    rng = random.Random(SEED)
    n = len(LENGTHS)
    # Hand-picked ratios exp(logp - old) for the two sequences with nonzero advantage.
    #   seq 0 (A > 0, len 5): 1.8 and 1.6/1.75 above 1.28 (high clip), 1.24 between 1.2 and 1.28
    #     (clipped only when symmetric), 0.7 below 0.8 (unclipped for A > 0); GSPO ratio ~1.34.
    #   seq 1 (A < 0, len 3): 0.5, 0.52 below 0.8 (low clip), 1.65 above 1.5 (delta clip);
    #     GSPO ratio ~0.75. Its positions 3, 4 are masked.
    hand = {0: [1.8, 0.7, 1.24, 1.6, 1.75], 1: [0.5, 1.65, 0.52, 1.3, 0.6]}
    old, logp, ref = [], [], []
    for i in range(n):
        o_row, l_row, r_row = [], [], []
        for t in range(T):
            o = round(rng.uniform(-3.3, -0.7), 4)
            if i in hand:
                ratio = hand[i][t]
            else:  # seeded, redrawn while within 0.02 of a clip boundary
                ratio = rng.uniform(0.5, 1.8)
                while min(abs(ratio - b) for b in (0.8, 1.2, 1.28, 1.5)) < 0.02:
                    ratio = rng.uniform(0.5, 1.8)
            lp = round(o + math.log(ratio), 4)
            rf = round(min(lp + rng.uniform(-0.8, 0.8), -0.05), 4)
            o_row.append(o)
            l_row.append(lp)
            r_row.append(rf)
        old.append(o_row)
        logp.append(l_row)
        ref.append(r_row)
    return logp, old, ref


def advantages_of(rewards, scale):
    mean_g = rewards.view(-1, G).mean(dim=1).repeat_interleave(G, dim=0)
    adv = rewards - mean_g
    if scale == "group":
        std = rewards.view(-1, G).std(dim=1).repeat_interleave(G, dim=0)
    elif scale == "batch":
        std = rewards.std().expand_as(rewards)
    elif scale == "none":
        std = None
    else:
        raise ValueError(scale)
    if std is not None:
        adv = adv / (std + 1e-4)
    return adv


def objective(logp, old, ref, mask, adv, loss_type, eps, eps_high, delta, level, beta):
    log_ratio = logp - old
    if level == "token":
        log_w = log_ratio
    elif level == "sequence":
        log_w = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    else:
        raise ValueError(level)
    coef_1 = torch.exp(log_w)
    coef_2 = torch.clamp(coef_1, 1 - eps, 1 + eps_high)
    c1 = torch.clamp(coef_1, max=delta) if delta is not None else coef_1
    a = adv.unsqueeze(-1)
    per_token_loss = -torch.min(c1 * a, coef_2 * a)
    per_token_loss = per_token_loss.expand(logp.shape)  # (B, 1) -> (B, T) at sequence level
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * kl
    if loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * T)
    elif loss_type == "dapo":
        num_items_in_batch = mask.sum()  # one generation batch, one process, no accumulation
        loss = (per_token_loss * mask).sum() / num_items_in_batch.clamp(min=1.0)
    else:
        raise ValueError(loss_type)

    with torch.no_grad():
        # coef_1 is (B, T) at token level and (B, 1) at sequence level, as in TRL.
        is_low = (coef_1 < 1 - eps) & (a < 0)
        is_high = (coef_1 > 1 + eps_high) & (a > 0)
        is_region = is_low | is_high

        def masked_batch_mean(x):
            # TRL's: a (B, 1) tensor (sequence level) is averaged over sequences.
            x = x.to(torch.float64)
            if x.shape[1] == 1:
                return x.mean().item()
            return ((x * mask).sum() / mask.sum().clamp(min=1.0)).item()

        metrics = {
            "clip_ratio_low": masked_batch_mean(is_low),
            "clip_ratio_high": masked_batch_mean(is_high),
            "clip_ratio_region": masked_batch_mean(is_region),
            "kl": masked_batch_mean(kl),
        }
    return loss, metrics, coef_1.detach()


def check_far_from_kinks(logp, old, mask):
    bounds = [0.8, 1.2, 1.28, 1.5]
    tok = torch.exp(logp - old)[mask.bool()]
    seq = torch.exp(((logp - old) * mask).sum(-1) / mask.sum(-1))
    for r in torch.cat([tok, seq]).tolist():
        for b in bounds:
            assert abs(r - b) > 0.01, (r, b)
    return tok, seq


def main():
    torch.set_default_dtype(torch.float64)
    logp_l, old_l, ref_l = make_inputs()
    f64 = dict(dtype=torch.float64)
    logp0 = torch.tensor(logp_l, **f64)
    old = torch.tensor(old_l, **f64)
    ref = torch.tensor(ref_l, **f64)
    rewards = torch.tensor(REWARDS, **f64)
    lengths = torch.tensor(LENGTHS)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.float64)

    assert (logp0 < 0).all() and (old < 0).all() and (ref < 0).all()
    tok, seq = check_far_from_kinks(logp0, old, mask)
    print("token ratios (masked-in) span %.3f .. %.3f" % (tok.min().item(), tok.max().item()))
    print("sequence ratios:", [round(x, 4) for x in seq.tolist()])

    cases = []
    for loss_type, scale, clip, level, beta in itertools.product(
        LOSS_TYPES, SCALES, CLIPS, LEVELS, BETAS
    ):
        eps, eps_high, delta = CLIPS[clip]
        adv = advantages_of(rewards, scale)
        logp = logp0.clone().requires_grad_(True)
        loss, metrics, _ = objective(
            logp, old, ref, mask, adv, loss_type, eps, eps_high, delta, level, beta
        )
        loss.backward()
        grad = logp.grad.detach()
        assert (grad[mask == 0] == 0).all(), "gradient leaked into masked positions"
        cases.append(
            {
                "loss_type": loss_type,
                "scale_rewards": scale,
                "clip": clip,
                "epsilon": eps,
                "epsilon_high": eps_high,
                "delta": delta,
                "importance_sampling_level": level,
                "beta": beta,
                "advantages": adv.tolist(),
                "loss": loss.item(),
                "grad_logp": grad.tolist(),
                **metrics,
            }
        )

    # Self-checks.
    def find(**kw):
        (c,) = [c for c in cases if all(c[k] == v for k, v in kw.items())]
        return c

    for key in ["clip_ratio_low", "clip_ratio_high", "clip_ratio_region"]:
        assert any(c[key] > 0 for c in cases), key
        for level in LEVELS:
            assert any(c[key] > 0 for c in cases if c["importance_sampling_level"] == level), (
                key,
                level,
            )
    for c in cases:
        assert c["advantages"][2] == 0.0 and c["advantages"][3:] == [0.0, 0.0, 0.0], c["advantages"]
        if c["loss_type"] in ("bnpo", "dapo"):
            o = find(**{**{k: c[k] for k in ("scale_rewards", "clip", "importance_sampling_level", "beta")},
                        "loss_type": "dapo" if c["loss_type"] == "bnpo" else "bnpo"})
            assert o["loss"] == c["loss"] and o["grad_logp"] == c["grad_logp"]
    common = dict(scale_rewards="group", clip="two_sided", beta=0.04)
    for level in LEVELS:
        assert find(loss_type="dr_grpo", importance_sampling_level=level, **common)["loss"] != find(
            loss_type="bnpo", importance_sampling_level=level, **common
        )["loss"]
    for lt in LOSS_TYPES:
        a = find(loss_type=lt, importance_sampling_level="token", **common)
        b = find(loss_type=lt, importance_sampling_level="sequence", **common)
        assert a["loss"] != b["loss"] and a["grad_logp"] != b["grad_logp"]
    # The three clip settings must give three different token-level gradients.
    g = [find(loss_type="grpo", scale_rewards="group", clip=k, importance_sampling_level="token",
              beta=0.0)["grad_logp"] for k in CLIPS]
    assert g[0] != g[1] and g[1] != g[2] and g[0] != g[2]

    # Central finite differences on the gradient, for a few cases.
    for c in cases[:: 7]:
        eps, eps_high, delta = CLIPS[c["clip"]]
        adv = torch.tensor(c["advantages"], **f64)
        h = 1e-6
        fd = torch.zeros(len(LENGTHS), T)
        for i in range(len(LENGTHS)):
            for t in range(T):
                vals = []
                for s in (1, -1):
                    lp = logp0.clone()
                    lp[i, t] += s * h
                    vals.append(objective(lp, old, ref, mask, adv, c["loss_type"], eps, eps_high,
                                          delta, c["importance_sampling_level"], c["beta"])[0].item())
                fd[i, t] = (vals[0] - vals[1]) / (2 * h)
        err = (fd - torch.tensor(c["grad_logp"])).abs().max().item()
        assert err < 1e-7, (c["loss_type"], c["clip"], err)

    kl_k3 = []
    for lp_v, ref_v in [(-1.0, -1.0), (-1.0, -2.0), (-2.0, -1.0), (-0.1, -3.0), (-3.0, -0.1)]:
        lp = torch.tensor(lp_v, **f64, requires_grad=True)
        rf = torch.tensor(ref_v, **f64)
        k = torch.exp(rf - lp) - (rf - lp) - 1
        k.backward()
        d = lp.grad.item()
        assert abs(d - (1 - math.exp(ref_v - lp_v))) < 1e-15
        kl_k3.append({"logp": lp_v, "ref": ref_v, "kl": k.item(), "grad_logp": d})

    out = {
        "generator": "benches/peers/grpo_objective.py",
        "torch": torch.__version__,
        "G": G,
        "T": T,
        "lengths": LENGTHS,
        "rewards": REWARDS,
        "logp": logp_l,
        "old_logp": old_l,
        "ref_logp": ref_l,
        "cases": cases,
        "kl_k3": kl_k3,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote %s: %d cases, %d bytes" % (os.path.relpath(OUT, ROOT), len(cases),
                                            os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
