#!/usr/bin/env python3
"""PyTorch eager reference for the bench-cpu throughput benchmark (configs/bench-cpu.yaml).

The same model and training step as Flotilla's bench-cpu run, written the way a typical eager
PyTorch implementation would (no torch.compile, experts looped with index_select/index_add):

  vocab 8192, hidden 512, 6 layers (layer 0 dense FFN 1536, layers 1-5 MoE), RMSNorm eps 1e-6,
  MLA attention (8 heads, q_lora 192, kv_lora 128, nope 32, rope 16 as interleaved pairs, v 32,
  RMSNorm on c_q and c_kv, k_pe shared by all heads), DeepSeekMoE (32 routed experts top-4,
  4 groups keep 2, sigmoid gate, selection-only bias, weights normalized over the selected
  unbiased scores, route scale 1, 1 shared expert, expert intermediate 128, SwiGLU, dropless),
  sequence-wise balance loss 1e-4, MTP depth 1 (weight 0.3, embedding half first, its own MLA + MoE
  block, shared embedding and head), untied head, seq_len 512, batch 4, fp32, AdamW (lr 3e-3,
  betas 0.9/0.95, wd 0.1 on matrices), grad clip 1.0, aux-loss-free bias update after each step.

Prints one JSON line: {"impl", "torch", "threads", "tokens_per_s", "step_time_s", "steps"}
(medians over the timed steps; tokens = batch * seq_len per step).

  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tests/reference/torch_bench_cpu.py \
      --threads 2 --warmup 1 --steps 5
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, D, LAYERS, FIRST_DENSE, DENSE_FF = 8192, 512, 6, 1, 1536
HEADS, Q_LORA, KV_LORA, NOPE, ROPE, V_DIM, ROPE_THETA = 8, 192, 128, 32, 16, 32, 10000.0
EXPERTS, TOP_K, GROUPS, KEEP_GROUPS, SHARED, EXPERT_FF = 32, 4, 4, 2, 1, 128
ROUTE_SCALE, SEQ_AUX_WEIGHT, BIAS_RATE = 1.0, 1e-4, 1e-3
MTP_WEIGHT, EPS, INIT_STD = 0.3, 1e-6, 0.02
SEQ, BATCH = 512, 4
LR, BETAS, WD, CLIP = 3e-3, (0.9, 0.95), 0.1, 1.0


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def linear(i, o):
    return nn.Linear(i, o, bias=False)


def rope_tables(seq):
    inv = ROPE_THETA ** (-torch.arange(0, ROPE, 2, dtype=torch.float32) / ROPE)  # [ROPE/2]
    ang = torch.arange(seq, dtype=torch.float32)[:, None] * inv[None, :]          # [T, ROPE/2]
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """x [B, T, h, ROPE]; rotates the interleaved pairs (2i, 2i+1)."""
    x = x.unflatten(-1, (ROPE // 2, 2))
    x0, x1 = x[..., 0], x[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class MLA(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_a, self.q_norm = linear(D, Q_LORA), RMSNorm(Q_LORA)
        self.q_b = linear(Q_LORA, HEADS * (NOPE + ROPE))
        self.kv_a, self.kv_norm = linear(D, KV_LORA + ROPE), RMSNorm(KV_LORA)
        self.kv_b = linear(KV_LORA, HEADS * (NOPE + V_DIM))
        self.o = linear(HEADS * V_DIM, D)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_b(self.q_norm(self.q_a(x))).view(B, T, HEADS, NOPE + ROPE)
        q_nope, q_pe = q.split([NOPE, ROPE], dim=-1)
        c_kv, k_pe = self.kv_a(x).split([KV_LORA, ROPE], dim=-1)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin)                      # [B, T, 1, ROPE]
        kv = self.kv_b(self.kv_norm(c_kv)).view(B, T, HEADS, NOPE + V_DIM)
        k_nope, v = kv.split([NOPE, V_DIM], dim=-1)
        q = torch.cat([q_nope, apply_rope(q_pe, cos, sin)], dim=-1).transpose(1, 2)
        k = torch.cat([k_nope, k_pe.expand(B, T, HEADS, ROPE)], dim=-1).transpose(1, 2)
        # PyTorch 1.13 has no F.scaled_dot_product_attention (added in 2.0): plain matmul + softmax.
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(NOPE + ROPE)
        p = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        out = torch.matmul(p, v.transpose(1, 2)).transpose(1, 2).reshape(B, T, HEADS * V_DIM)
        return self.o(out)


class SwiGLU(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.w1, self.w3, self.w2 = linear(D, hidden), linear(D, hidden), linear(hidden, D)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = linear(D, EXPERTS)
        self.register_buffer("bias", torch.zeros(EXPERTS))   # aux-free balancer, not trained
        self.register_buffer("load", torch.zeros(EXPERTS))   # tokens routed this step
        self.experts = nn.ModuleList(SwiGLU(EXPERT_FF) for _ in range(EXPERTS))
        self.shared = SwiGLU(SHARED * EXPERT_FF)
        self.aux_loss = None

    def forward(self, x):
        B, T, _ = x.shape
        flat = x.reshape(-1, D)
        N = flat.shape[0]
        s = torch.sigmoid(self.gate(flat).float())                           # [N, E]
        biased = (s + self.bias).detach()                                   # selection only
        grouped = biased.view(N, GROUPS, EXPERTS // GROUPS)
        group_score = grouped.topk(2, dim=-1).values.sum(-1)                # [N, G]
        keep = group_score.topk(KEEP_GROUPS, dim=-1).indices
        drop = torch.ones_like(group_score, dtype=torch.bool).scatter_(1, keep, False)
        masked = grouped.masked_fill(drop.unsqueeze(-1), float("-inf")).view(N, EXPERTS)
        idx = masked.topk(TOP_K, dim=-1).indices                            # [N, k]
        w = s.gather(1, idx)
        w = w / w.sum(-1, keepdim=True) * ROUTE_SCALE
        with torch.no_grad():
            self.load += torch.bincount(idx.flatten(), minlength=EXPERTS).float()

        # sequence-wise balance loss: f from the top-k of the unbiased scores (no gradient)
        s_seq = s.view(B, T, EXPERTS)
        with torch.no_grad():
            hits = torch.zeros_like(s_seq).scatter_(2, s_seq.topk(TOP_K, dim=-1).indices, 1.0)
            f = hits.sum(1) * (EXPERTS / (TOP_K * T))                       # [B, E]
        P = (s_seq / s_seq.sum(-1, keepdim=True)).mean(1)                   # [B, E]
        self.aux_loss = SEQ_AUX_WEIGHT * (f * P).sum(-1).mean()

        y = self.shared(flat)
        counts = torch.bincount(idx.flatten(), minlength=EXPERTS).tolist()
        for e, expert in enumerate(self.experts):
            if counts[e] == 0:
                continue
            tok, slot = torch.where(idx == e)
            out = expert(flat.index_select(0, tok)) * w[tok, slot].unsqueeze(-1)
            y = y.index_add(0, tok, out)
        return y.view(B, T, D)


class Block(nn.Module):
    def __init__(self, moe):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(D), MLA()
        self.ffn_norm = RMSNorm(D)
        self.moe = MoE() if moe else None
        self.ffn = None if moe else SwiGLU(DENSE_FF)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        ffn = self.moe if self.moe is not None else self.ffn
        return x + ffn(self.ffn_norm(x))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(Block(moe=i >= FIRST_DENSE) for i in range(LAYERS))
        self.norm = RMSNorm(D)
        self.head = linear(D, VOCAB)                   # untied
        self.mtp_enorm, self.mtp_hnorm = RMSNorm(D), RMSNorm(D)
        self.mtp_proj = linear(2 * D, D)
        self.mtp_block = Block(moe=True)
        self.mtp_norm = RMSNorm(D)                     # shared_head.norm
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=INIT_STD)
        cos, sin = rope_tables(SEQ)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.ones(SEQ, SEQ, dtype=torch.bool).triu(1))

    def moes(self):
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, tokens):
        """tokens [B, T + 2]: main model reads t_0..t_{T-1}, predicts t_1..t_T; MTP predicts t_{i+2}."""
        inp, tgt, mtp_in, mtp_tgt = tokens[:, :SEQ], tokens[:, 1:SEQ + 1], tokens[:, 1:SEQ + 1], tokens[:, 2:]
        h = self.embed(inp)
        for layer in self.layers:
            h = layer(h, self.cos, self.sin, self.mask)
        lm = F.cross_entropy(self.head(self.norm(h)).view(-1, VOCAB), tgt.reshape(-1))
        hp = self.mtp_proj(torch.cat([self.mtp_enorm(self.embed(mtp_in)), self.mtp_hnorm(h)], dim=-1))
        hm = self.mtp_block(hp, self.cos, self.sin, self.mask)
        mtp = F.cross_entropy(self.head(self.mtp_norm(hm)).view(-1, VOCAB), mtp_tgt.reshape(-1))
        aux = sum(m.aux_loss for m in self.moes())
        return lm + MTP_WEIGHT * mtp + aux, lm


def train_step(model, opt, tokens):
    opt.zero_grad(set_to_none=True)
    loss, lm = model(tokens)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    opt.step()
    with torch.no_grad():   # aux-loss-free balancing: b += gamma * sign(mean_load - load)
        for m in model.moes():
            m.bias += BIAS_RATE * torch.sign(m.load.mean() - m.load)
            m.load.zero_()
    return lm.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--verbose", action="store_true", help="per-step loss and time on stderr")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = Model()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=1e-8)
    times = []
    for step in range(args.warmup + args.steps):
        tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 2))
        t0 = time.perf_counter()
        lm = train_step(model, opt, tokens)
        dt = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(dt)
        if args.verbose:
            print(f"step {step} lm_loss {lm:.4f} time {dt:.3f}s", file=sys.stderr)
    step_time = statistics.median(times)
    print(json.dumps({"impl": "pytorch-eager", "torch": torch.__version__, "threads": args.threads,
                      "tokens_per_s": round(BATCH * SEQ / step_time, 1),
                      "step_time_s": round(step_time, 4), "steps": len(times)}))


if __name__ == "__main__":
    main()
