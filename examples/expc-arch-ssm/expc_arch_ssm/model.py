"""The "ssm" arch's torch module: a small mamba-like language model, imported only by the trainer
(through `Arch.build`, "expc_arch_ssm.model:build").

    token embedding (tied with the head)
    n_layer x [ RMSNorm -> in_proj to 2 x expand*d_model (x and a gate z)
                -> causal depthwise Conv1d (kernel d_conv) on x -> SiLU
                -> selective diagonal state-space scan over d_state
                -> y * SiLU(z) -> out_proj ] + residual
    RMSNorm -> lm head

The scan is the plain sequential recurrence, one time step at a time: made for correctness on a
CPU, not for speed (Mamba's fused kernel does the same arithmetic in parallel).
forward(idx, targets) -> (logits, loss), like the trainer's GPT. Causal: position t reads
tokens 0..t only (the convolution is padded on the left, the scan runs forward in time).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .arch import dt_rank


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SSMBlock(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        d, n, k = c["d_model"], c["d_state"], c["d_conv"]
        inner, rank = c["expand"] * d, dt_rank(c)
        self.inner, self.rank, self.d_state = inner, rank, n
        self.norm = RMSNorm(d)
        self.in_proj = nn.Linear(d, 2 * inner, bias=False)
        # Depthwise (one filter per channel); padding k - 1 on both sides, the right side cut off
        # in forward, so output t sees inputs t-k+1 .. t.
        self.conv = nn.Conv1d(inner, inner, kernel_size=k, groups=inner, padding=k - 1)
        self.x_proj = nn.Linear(inner, rank + 2 * n, bias=False)  # per-token step size, B and C
        self.dt_proj = nn.Linear(rank, inner, bias=True)
        # S4D-real initialisation: A = -(1, 2, ..., d_state) on every channel, kept as log(-A).
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d, bias=False)

    def forward(self, x):
        T = x.shape[1]
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # (B, T, inner) each
        u = F.silu(self.conv(u.transpose(1, 2))[..., :T].transpose(1, 2))
        dt, b, c = self.x_proj(u).split([self.rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (B, T, inner), a positive step per token and channel
        y = self.scan(u, dt, -torch.exp(self.A_log), b, c) + u * self.D
        return x + self.out_proj(y * F.silu(z))

    @staticmethod
    def scan(u, dt, A, b, c):
        """h_t = exp(dt_t A) h_{t-1} + dt_t b_t u_t; y_t = c_t . h_t, per channel (diagonal A).
        u, dt: (B, T, inner); A: (inner, N); b, c: (B, T, N) -> y: (B, T, inner)."""
        decay = torch.exp(dt.unsqueeze(-1) * A)                # (B, T, inner, N)
        drive = (dt * u).unsqueeze(-1) * b.unsqueeze(2)        # (B, T, inner, N)
        h = torch.zeros_like(decay[:, 0])
        ys = []
        for t in range(u.shape[1]):
            h = decay[:, t] * h + drive[:, t]
            ys.append((h * c[:, t].unsqueeze(1)).sum(-1))      # (B, inner)
        return torch.stack(ys, dim=1)


class SSM(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.config = dict(c)
        self.embedding = nn.Embedding(c["vocab_size"], c["d_model"])
        self.blocks = nn.ModuleList([SSMBlock(c) for _ in range(c["n_layer"])])
        self.norm_f = RMSNorm(c["d_model"])
        self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)
        self.embedding.weight = self.lm_head.weight  # tied: counted once by parameters()
        self.apply(self._init_weights)
        for block in self.blocks:
            # Step sizes between 1e-3 and 1e-1 at the start (Mamba's dt initialisation): the
            # bias is softplus's inverse of a log-uniform draw.
            dt = torch.exp(torch.rand(block.inner) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
            with torch.no_grad():
                block.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            nn.init.normal_(block.out_proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * c["n_layer"]))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        x = self.embedding(idx)  # (B, T, d_model)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.norm_f(x))  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, generator: torch.Generator, temperature: float = 0.8,
                 top_k: int = 40):
        """Sample max_new_tokens after idx (B, T), for the trainer's `train.sample_tokens`
        (recomputes the window each token: simple, not fast)."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config["block_size"]:])
            logits = logits[:, -1, :].float() / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits[logits < kth] = -float("inf")
            nxt = torch.multinomial(F.softmax(logits, dim=-1).cpu(), 1, generator=generator).to(idx.device)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


def build(manifest: dict, root) -> nn.Module:
    """The trainer's entry: the whole manifest and the project root (unused here: nothing to
    load); the RNG is seeded by the caller, so every rank builds the same weights."""
    return SSM(manifest["model"])
