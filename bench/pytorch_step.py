#!/usr/bin/env python3
"""The step `albatross bench step` times, in PyTorch + transformers, for a ratio measured in
one run on one machine.

One step: `AlbertForPreTraining` forward on a synthetic batch (random tokens, ~15% of
positions masked for MLM, never [CLS]; second half of each sequence is segment 1; full
attention mask; SOP labels alternate), backward, clip by global norm 1.0, optimizer update
(LAMB as ALBERT defines it, like the Rust side; `--optimizer adamw` for torch's AdamW).
Prints one JSON object: s/step and tokens/s of the median step (and `tokens_per_second_mean`
over all timed steps), CPU-seconds per step, peak RSS.

    python bench/pytorch_step.py [--preset base] [--batch 8] [--seq 128] [--steps 3]
                                 [--device cpu|cuda]

On `--device cuda` (PyTorch eager, fp32, no compile) each timed interval ends with a device
synchronisation, and `peak_device_memory_bytes` is torch's peak allocation.
"""

import argparse
import json
import resource
import statistics
import time

import torch
import transformers
from transformers import AlbertConfig, AlbertForPreTraining

PRESETS = {  # V, E, H, L, heads, FF (the Rust presets)
    "tiny": (1000, 32, 64, 2, 2, 128),
    "base": (30000, 128, 768, 12, 12, 3072),
    "large": (30000, 128, 1024, 24, 16, 4096),
}


def build_config(preset):
    v, e, h, layers, heads, ff = PRESETS[preset]
    return AlbertConfig(
        vocab_size=v,
        embedding_size=e,
        hidden_size=h,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ff,
        hidden_act="gelu_new",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.1,
        max_position_embeddings=512,
    )


def synthetic_batch(vocab, batch, seq, seed):
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    masked = torch.rand(batch, seq, generator=gen) < 0.15
    masked[:, 0] = False
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    token_type_ids = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous()
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "labels": labels,
        "sentence_order_label": torch.arange(batch) % 2,
    }


class Lamb:
    """ALBERT's LAMB: no bias correction; decay and trust ratio only for rank >= 2 tensors."""

    def __init__(self, params, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01):
        self.params = [p for p in params if p.requires_grad]
        self.b1, self.b2, self.eps, self.wd = beta_1, beta_2, epsilon, weight_decay
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, lr):
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
            update = m / (v.sqrt() + self.eps)
            ratio = 1.0
            if p.dim() >= 2:
                update.add_(p, alpha=self.wd)
                w_norm, u_norm = torch.linalg.norm(p), torch.linalg.norm(update)
                if w_norm > 0 and u_norm > 0:
                    ratio = (w_norm / u_norm).item()
            p.add_(update, alpha=-lr * ratio)

    def zero_grad(self):
        for p in self.params:
            p.grad = None


class AdamW:
    def __init__(self, params):
        self.inner = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, eps=1e-6)

    def step(self, lr):
        for group in self.inner.param_groups:
            group["lr"] = lr
        self.inner.step()

    def zero_grad(self):
        self.inner.zero_grad(set_to_none=True)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimizer", default="lamb", choices=["lamb", "adamw"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = build_config(args.preset)
    model = AlbertForPreTraining(config).float().train().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = Lamb(params) if args.optimizer == "lamb" else AdamW(params)
    batch = {
        k: v.to(device)
        for k, v in synthetic_batch(config.vocab_size, args.batch, args.seq, args.seed).items()
    }

    total, fwd_bwd, opt = [], [], []
    cpu_start = None
    loss = float("nan")
    for step in range(args.warmup_steps + args.steps):
        if step == args.warmup_steps:
            cpu_start = cpu_seconds()
        sync()
        t0 = time.perf_counter()
        out = model(**batch)
        out.loss.backward()
        loss = out.loss.item()
        sync()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step(1e-4)
        optim.zero_grad()
        sync()
        t2 = time.perf_counter()
        if step >= args.warmup_steps:
            total.append(t2 - t0)
            fwd_bwd.append(t1 - t0)
            opt.append(t2 - t1)
    cpu = (cpu_seconds() - cpu_start) / args.steps if args.steps else None
    seconds = statistics.median(total)
    report = {
        "seconds_per_step": seconds,
        "tokens_per_second": args.batch * args.seq / seconds,
        # Tokens over the timed steps' total time: what `albatross bench train` reports as its
        # `tokens_per_second` (its median-step figure is `tokens_per_second_median`).
        "tokens_per_second_mean": args.batch * args.seq * len(total) / sum(total) if total else None,
        "cpu_seconds_per_step": cpu,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "forward_backward_seconds": statistics.median(fwd_bwd),
        "optimizer_seconds": statistics.median(opt),
        "last_loss": loss,
        "parameters": sum(p.numel() for p in params),
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "threads": args.threads,
        "optimizer": args.optimizer,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else None,
        "peak_device_memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
