"""Reference implementations: causal self-attention and positional encodings (Session 1)."""
from __future__ import annotations

import math

import torch


def causal_mask(seq_len: int, device=None) -> torch.Tensor:
    """Boolean (seq, seq) mask, True where query i may attend to key j, i.e. j <= i (Vaswani et al., 2017)."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()


def causal_self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention with a causal mask, softmax(QK^T/sqrt(d) + M) V (Vaswani et al., 2017, eq. 1).

    q, k, v: (batch, heads, seq, d). Returns (output (batch, heads, seq, d), weights (batch, heads, seq, seq)).
    """
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (batch, heads, seq, seq)
    scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def sinusoidal_positions(seq_len: int, d_model: int) -> torch.Tensor:
    """Sinusoidal encodings P[t, 2i] = sin(t w_i), P[t, 2i+1] = cos(t w_i), w_i = 10000^(-2i/d) (Vaswani et al., 2017)."""
    t = torch.arange(seq_len, dtype=torch.float32)[:, None]  # (seq, 1)
    omega = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (ceil(d/2),)
    angles = t * omega  # (seq, ceil(d/2))
    pe = torch.zeros(seq_len, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


def rope_angles(positions: torch.Tensor, d: int, base: float = 10000.0) -> torch.Tensor:
    """Rotation angles theta_{t,i} = t * base^(-2i/d) for each position t and pair i (Su et al., 2021)."""
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float32, device=positions.device) / d)  # (d/2,)
    return positions.to(torch.float32)[..., None] * inv_freq  # (..., seq, d/2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding: rotate each pair (x_{2i}, x_{2i+1}) by angle theta_{t,i} (Su et al., 2021, eq. 34).

    x: (..., seq, d) with d even; positions: (seq,) integer positions.
    """
    theta = rope_angles(positions, x.shape[-1])  # (seq, d/2)
    cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x_even * cos - x_odd * sin
    out[..., 1::2] = x_even * sin + x_odd * cos
    return out
