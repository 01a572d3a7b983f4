#!/usr/bin/env python3
"""Regenerates the golden data the Rust tests in `crates/model` compare against.

Writes, next to this file:
- `<case>/config.json`, `<case>/model.safetensors`: a small random transformers
  `AlbertForPreTraining` saved with `save_pretrained` (one case per activation);
- `<case>/golden.safetensors`: the inputs, `prediction_logits`, `sop_logits`, `loss`
  (plus `mlm_loss`, `sop_loss` for diagnosis) and `grad.<name>` for every parameter, under
  its transformers name and in transformers' layout (Linear weights `[out, in]`);
- `lamb.safetensors`: a few steps of LAMB as ALBERT defines it, computed in float64 from
  google-research/albert `lamb_optimizer.py` + `optimization.py` (clip by global norm 1.0,
  warm-up then linear decay), on a small tensor set with fixed gradients.

The tests never run this script; they read the committed files. Usage:
    python3 crates/model/tests/golden/make_golden.py
Needs torch, transformers, safetensors (versions in README.md).
"""

import json
import pathlib

import torch
from safetensors.torch import save_file
from transformers import AlbertConfig, AlbertForPreTraining

HERE = pathlib.Path(__file__).resolve().parent

BATCH, SEQ = 2, 12


def tiny_config(hidden_act):
    return AlbertConfig(
        vocab_size=100,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_hidden_groups=1,
        inner_group_num=1,
        num_attention_heads=2,
        intermediate_size=37,
        hidden_act=hidden_act,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
        max_position_embeddings=16,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )


def perturb(model, gen):
    """Weights std 0.15, biases N(0, 0.1), LayerNorm gains 1 + N(0, 0.2): nothing sits at 0/1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.15 * noise)


def fixed_inputs(gen, vocab, pad_attended):
    """Two sequences of 12; the second padded after 8 tokens. With `pad_attended` the pad id
    0 also occurs at one attended position (transformers' `padding_idx` then drops that
    lookup's gradient to the pad row)."""
    lengths = [SEQ, 8]
    input_ids = torch.randint(5, vocab, (BATCH, SEQ), generator=gen)
    attention_mask = torch.zeros(BATCH, SEQ, dtype=torch.long)
    token_type_ids = torch.zeros(BATCH, SEQ, dtype=torch.long)
    labels = torch.full((BATCH, SEQ), -100, dtype=torch.long)
    masked = {0: [2, 5, 9, 11], 1: [1, 4, 6]}
    for b, n in enumerate(lengths):
        input_ids[b, 0] = 2  # [CLS]
        attention_mask[b, :n] = 1
        token_type_ids[b, n // 2 : n] = 1
        input_ids[b, n:] = 0
        for s in masked[b]:
            labels[b, s] = input_ids[b, s]
            input_ids[b, s] = 4  # [MASK]
    # One position keeps its token as the label (BERT's 10% "unchanged" case).
    labels[0, 7] = input_ids[0, 7]
    if pad_attended:
        input_ids[0, 8] = 0
    sentence_order_label = torch.tensor([1, 0])
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "sentence_order_label": sentence_order_label,
    }


def make_case(name, hidden_act, seed, pad_attended=False):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = tiny_config(hidden_act)
    model = AlbertForPreTraining(config).float()
    perturb(model, gen)
    model.eval()  # dropout is 0 anyway; eval makes it explicit
    inputs = fixed_inputs(gen, config.vocab_size, pad_attended)
    out = model(**inputs)
    out.loss.backward()
    with torch.no_grad():
        logits = out.prediction_logits.reshape(-1, config.vocab_size)
        mlm_loss = torch.nn.functional.cross_entropy(logits, inputs["labels"].reshape(-1))
        sop_loss = torch.nn.functional.cross_entropy(out.sop_logits, inputs["sentence_order_label"])
    golden = {k: v.contiguous() for k, v in inputs.items()}
    golden["prediction_logits"] = out.prediction_logits.detach().contiguous()
    golden["sop_logits"] = out.sop_logits.detach().contiguous()
    golden["loss"] = out.loss.detach().reshape([])
    golden["mlm_loss"] = mlm_loss.reshape([])
    golden["sop_loss"] = sop_loss.reshape([])
    names = []
    for pname, p in model.named_parameters():  # tied parameters appear once
        golden["grad." + pname] = p.grad.detach().clone().contiguous()
        names.append(pname)
    case_dir = HERE / name
    case_dir.mkdir(exist_ok=True)
    model.save_pretrained(case_dir, safe_serialization=True)
    save_file(golden, str(case_dir / "golden.safetensors"), metadata={"parameters": json.dumps(names)})
    print(f"{name}: loss {out.loss.item():.6f}, {len(names)} parameter gradients")


# ---------------------------------------------------------------------------------------
# LAMB reference (float64), following google-research/albert lamb_optimizer.py:
#   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2          (no bias correction)
#   u = m / (sqrt(v) + eps);  u += wd * w     (unless name has LayerNorm/layer_norm/bias)
#   r = ||w|| / ||u|| if both > 0 else 1      (same exclusion list)
#   w = w - lr * r * u
# and optimization.py: grads clipped by global norm 1.0; lr warm-up then polynomial decay.
# ---------------------------------------------------------------------------------------

B1, B2, EPS, WD = 0.9, 0.999, 1e-6, 0.01
PEAK_LR, WARMUP, TOTAL, POWER = 0.05, 2, 6, 1.0
CLIP = 1.0
EXCLUDE = ("LayerNorm", "layer_norm", "bias")


def albert_lr(step):
    decayed = PEAK_LR * (1.0 - min(step, TOTAL) / TOTAL) ** POWER
    if step < WARMUP:
        return PEAK_LR * step / WARMUP
    return decayed


def make_lamb(steps=5, seed=7):
    gen = torch.Generator().manual_seed(seed)
    d = torch.float64
    params = {
        "dense.weight": torch.randn(4, 3, generator=gen, dtype=d) * 0.5,
        "dense.bias": torch.randn(4, generator=gen, dtype=d) * 0.1,
        "LayerNorm.weight": 1.0 + 0.1 * torch.randn(3, generator=gen, dtype=d),
        "zero.weight": torch.zeros(2, 3, dtype=d),  # w-norm 0: trust ratio falls back to 1
        "embeddings.weight": torch.randn(5, 2, generator=gen, dtype=d) * 0.2,
    }
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    out = {f"init.{k}": p.clone() for k, p in params.items()}
    lrs, norms = [], []
    for step in range(steps):
        scale = 2.0 if step % 2 == 0 else 0.3  # even steps exceed the clip norm, odd ones not
        grads = {k: torch.randn(p.shape, generator=gen, dtype=d) * scale for k, p in params.items()}
        for k, g in grads.items():
            out[f"grad.{step}.{k}"] = g.clone()
        norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))
        factor = CLIP / max(norm.item(), CLIP)  # tf.clip_by_global_norm
        lr = albert_lr(step)
        lrs.append(lr)
        norms.append(norm.item())
        for k, w in params.items():
            g = grads[k] * factor
            m[k] = B1 * m[k] + (1.0 - B1) * g
            v[k] = B2 * v[k] + (1.0 - B2) * g * g
            update = m[k] / (torch.sqrt(v[k]) + EPS)
            excluded = any(e in k for e in EXCLUDE)
            if not excluded:
                update = update + WD * w
            ratio = 1.0
            if not excluded:
                w_norm = torch.linalg.norm(w)
                u_norm = torch.linalg.norm(update)
                if w_norm > 0 and u_norm > 0:
                    ratio = (w_norm / u_norm).item()
            params[k] = w - ratio * lr * update
            out[f"param.{step}.{k}"] = params[k].clone()
    for k in params:
        out[f"moment_1.{k}"] = m[k]
        out[f"moment_2.{k}"] = v[k]
    out["lr"] = torch.tensor(lrs, dtype=d)
    out["grad_norm"] = torch.tensor(norms, dtype=d)
    meta = {
        "names": json.dumps(list(params)),
        "steps": str(steps),
        "hyper": json.dumps(
            {"beta_1": B1, "beta_2": B2, "epsilon": EPS, "weight_decay_rate": WD,
             "peak_lr": PEAK_LR, "warmup_steps": WARMUP, "total_steps": TOTAL,
             "power": POWER, "clip_norm": CLIP}
        ),
    }
    save_file({k: t.contiguous() for k, t in out.items()}, str(HERE / "lamb.safetensors"), metadata=meta)
    print(f"lamb: {steps} steps, lrs {lrs}, grad norms {[round(n, 3) for n in norms]}")


def main():
    torch.set_num_threads(1)
    make_case("gelu_new", "gelu_new", seed=1234)
    make_case("gelu", "gelu", seed=4321, pad_attended=True)
    make_lamb()
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
