#!/usr/bin/env python3
"""Run by benchmarks/train-step.ts (adapted from /work/shared/anchors/torch_llama_lora_step.py).
Adds --export PREFIX: writes the initial weights of each mode (torch layout, transformers' Llama
parameter names) and the token ids to PREFIX-<mode>.json + .bin, and prints the step-0 loss, so the
tsgrad run can start from the same weights and inputs and check that it computes the same loss.
It also prints a BLAS speed probe (512^3 sgemm, 1 thread) so the caller can refuse the reference BLAS.

One training step of a small Llama-style decoder in plain PyTorch (CPU, fp32).

Model: hidden 256, 4 layers, 4 heads (head_dim 64), 2 KV heads (GQA), intermediate 688,
vocab 4096, RMSNorm (eps 1e-6), RoPE (theta 10000), SwiGLU MLP, causal attention,
untied lm_head, no biases. Batch 8 x seq 128 (1024 tokens), next-token cross-entropy.

Modes:
  lora : base weights frozen; LoRA rank 8 (alpha 16, A ~ kaiming, B = 0) on
         q,k,v,o,gate,up,down of every layer; AdamW over LoRA params only.
  full : no adapters, every parameter trainable; AdamW over all params.
One step = forward + backward + AdamW step + zero_grad.

Usage: python3 torch_llama_lora_step.py [--threads 1 2] [--mode lora full] [--steps 10] [--warmup 3]
Prints one JSON line per (mode, threads): median ms/step, tokens/s, and analytic GFLOP/s.

Note (Debian 12): python3-torch links libblas.so.3, which by default is the slow reference
BLAS. Run with LD_LIBRARY_PATH pointing at an OpenBLAS libblas.so.3 (e.g. extracted from the
libopenblas0-openmp .deb) and OPENBLAS_CORETYPE=SkylakeX to get AVX-512 sgemm; the BLAS in use
is reported in the output.
"""
import argparse, json, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN, LAYERS, HEADS, KV_HEADS, INTER, VOCAB = 256, 4, 4, 2, 688, 4096
HEAD_DIM = HIDDEN // HEADS
BATCH, SEQ = 8, 128
RANK, ALPHA = 8, 16


class LoRALinear(nn.Module):
    def __init__(self, fin, fout, rank=0, alpha=16):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fout, fin))
        nn.init.normal_(self.weight, std=0.02)
        self.rank = rank
        if rank > 0:
            self.lora_A = nn.Parameter(torch.empty(rank, fin))
            self.lora_B = nn.Parameter(torch.zeros(fout, rank))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.scale = alpha / rank

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.rank > 0:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale
        return y


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d)); self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq, dim, theta=10000.0):
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim))
    f = torch.outer(torch.arange(seq).float(), inv)          # (T, dim/2)
    emb = torch.cat([f, f], dim=-1)                          # (T, dim)  HF "rotate_half" layout
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Block(nn.Module):
    def __init__(self, rank):
        super().__init__()
        self.ln1 = RMSNorm(HIDDEN); self.ln2 = RMSNorm(HIDDEN)
        self.q = LoRALinear(HIDDEN, HEADS * HEAD_DIM, rank)
        self.k = LoRALinear(HIDDEN, KV_HEADS * HEAD_DIM, rank)
        self.v = LoRALinear(HIDDEN, KV_HEADS * HEAD_DIM, rank)
        self.o = LoRALinear(HEADS * HEAD_DIM, HIDDEN, rank)
        self.gate = LoRALinear(HIDDEN, INTER, rank)
        self.up = LoRALinear(HIDDEN, INTER, rank)
        self.down = LoRALinear(INTER, HIDDEN, rank)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = HEADS // KV_HEADS
        k = k.repeat_interleave(rep, dim=1); v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HEAD_DIM))
        att = att.masked_fill(mask, float('-inf')).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, HEADS * HEAD_DIM)
        x = x + self.o(y)
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, rank):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.layers = nn.ModuleList([Block(rank) for _ in range(LAYERS)])
        self.norm = RMSNorm(HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        nn.init.normal_(self.lm_head.weight, std=0.02)
        cos, sin = rope_tables(SEQ, HEAD_DIM)
        self.register_buffer('cos', cos); self.register_buffer('sin', sin)
        self.register_buffer('mask', torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), 1))

    def forward(self, ids, targets):
        x = self.embed(ids)
        for l in self.layers:
            x = l(x, self.cos, self.sin, self.mask)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))


def flops_per_step(mode):
    """Analytic matmul FLOPs (2*m*n*k) of one step; elementwise ops ignored."""
    tok = BATCH * SEQ
    lin = LAYERS * (HIDDEN * HEADS * HEAD_DIM * 2 + HIDDEN * KV_HEADS * HEAD_DIM * 2 + 3 * HIDDEN * INTER)
    lm = HIDDEN * VOCAB
    attn = LAYERS * 2 * (2 * BATCH * HEADS * SEQ * SEQ * HEAD_DIM)    # QK^T and AV (full, unmasked)
    fwd = 2 * tok * (lin + lm) + attn
    lora_p = LAYERS * RANK * ((HIDDEN + HEADS * HEAD_DIM) * 2 + (HIDDEN + KV_HEADS * HEAD_DIM) * 2 + 3 * (HIDDEN + INTER))
    if mode == 'full':
        return 3 * fwd                                  # fwd + dX + dW
    # LoRA: fwd (+adapters), dX through every linear (no dW for frozen weights; lm_head dX
    # is needed, embedding needs nothing), attention backward (4 matmuls = 2x its forward),
    # adapters' dX and dW.
    return fwd + 2 * tok * lora_p + (2 * tok * (lin + lm) + 2 * attn) + 2 * (2 * tok * lora_p)


def blas_lib():
    libs = set()
    for line in open('/proc/self/maps'):
        p = line.split()[-1]
        if 'blas' in p or 'mkl' in p:
            libs.add('/'.join(p.split('/')[-2:]))
    return sorted(libs)


def run(mode, threads, steps, warmup):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Llama(RANK if mode == 'lora' else 0)
    if mode == 'lora':
        for n, p in model.named_parameters():
            p.requires_grad = 'lora_' in n
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=g)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(warmup):
        step()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); loss = step(); ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    return {
        'mode': mode, 'threads': threads, 'ms_per_step': round(med * 1e3, 2),
        'ms_min': round(min(ts) * 1e3, 2), 'tokens_per_s': round(BATCH * SEQ / med),
        'gflop_per_step': round(flops_per_step(mode) / 1e9, 2),
        'gflops_effective': round(flops_per_step(mode) / med / 1e9, 1),
        'trainable_params': sum(p.numel() for p in params),
        'total_params': sum(p.numel() for p in model.parameters()),
        'loss': round(loss, 4), 'torch': torch.__version__, 'blas': blas_lib(),
    }


def profile(mode, threads, steps=5):
    """Share of self CPU time by op over `steps` steps (after 2 warm-up steps)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Llama(RANK if mode == 'lora' else 0)
    if mode == 'lora':
        for n, p in model.named_parameters():
            p.requires_grad = 'lora_' in n
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1))
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    def step():
        model(x, y).backward(); opt.step(); opt.zero_grad(set_to_none=True)
    step(); step()
    with torch.autograd.profiler.profile() as prof:
        for _ in range(steps):
            step()
    rows = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    tot = sum(t for _, t in rows)
    gemm = sum(t for k, t in rows if k in ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm'))
    top = sorted(rows, key=lambda r: -r[1])[:12]
    print(json.dumps({'mode': mode, 'threads': threads, 'self_cpu_ms_per_step': round(tot / steps / 1e3, 1),
                      'gemm_share': round(gemm / tot, 3),
                      'top': [(k, round(t / tot, 3)) for k, t in top]}), flush=True)


HF_NAMES = {'q': 'self_attn.q_proj', 'k': 'self_attn.k_proj', 'v': 'self_attn.v_proj', 'o': 'self_attn.o_proj',
            'gate': 'mlp.gate_proj', 'up': 'mlp.up_proj', 'down': 'mlp.down_proj',
            'ln1': 'input_layernorm', 'ln2': 'post_attention_layernorm'}


def hf_name(n):
    """Anchor parameter name -> transformers/peft name (without peft's base_model.model. prefix)."""
    if n == 'embed.weight':
        return 'model.embed_tokens.weight'
    if n == 'norm.weight':
        return 'model.norm.weight'
    if n == 'lm_head.weight':
        return n
    parts = n.split('.')  # layers.L.mod.leaf
    leaf = parts[3]
    mod = 'model.layers.%s.%s' % (parts[1], HF_NAMES[parts[2]])
    if leaf == 'weight':
        return mod + '.weight'
    return mod + '.%s.default.weight' % leaf  # lora_A / lora_B


def export(mode, prefix):
    import numpy as np
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Llama(RANK if mode == 'lora' else 0)
    if mode == 'lora':
        for n, p in model.named_parameters():
            p.requires_grad = 'lora_' in n
    ids = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1))
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    index, chunks, off = {}, [], 0
    for n, p in model.named_parameters():
        a = np.ascontiguousarray(p.detach().numpy(), dtype=np.float32)
        index[hf_name(n)] = [list(a.shape), off]; chunks.append(a.ravel()); off += a.size
    a = ids.numpy().astype(np.float32)  # ids < 4096 are exact in float32
    index['ids'] = [list(a.shape), off]; chunks.append(a.ravel()); off += a.size
    np.concatenate(chunks).tofile('%s-%s.bin' % (prefix, mode))
    with open('%s-%s.json' % (prefix, mode), 'w') as f:
        json.dump(index, f)
    with torch.no_grad():
        loss = model(x, y).item()
    return {'export': mode, 'loss0': loss}


def blas_probe():
    torch.set_num_threads(1)
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(10):
        torch.mm(a, b)
    return 2 * 512 ** 3 * 10 / (time.perf_counter() - t0) / 1e9


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--mode', nargs='+', default=['lora', 'full'], choices=['lora', 'full'])
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--profile', action='store_true',
                    help='also print the share of step time per op kind (torch.autograd.profiler)')
    ap.add_argument('--export', default='', help='write the initial weights + ids to PREFIX-<mode>.{json,bin}')
    a = ap.parse_args()
    if a.export:
        for m in a.mode:
            print(json.dumps(export(m, a.export)), flush=True)
        raise SystemExit
    print(json.dumps({'probe_512_1t': blas_probe(), 'blas': blas_lib(), 'torch': torch.__version__}), flush=True)
    if a.profile:
        for m in a.mode:
            for t in a.threads:
                profile(m, t)
        raise SystemExit
    for m in a.mode:
        for t in a.threads:
            print(json.dumps(run(m, t, a.steps, a.warmup)), flush=True)
