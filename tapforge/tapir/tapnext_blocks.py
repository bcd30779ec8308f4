"""TAPNext's TRecViT blocks: a gated linear recurrence over time (RG-LRU, as in Griffin / RecurrentGemma) for
every token, then a ViT block over the tokens of each frame.

Module and parameter names are those of the official torch TAPNext (``tapnet/tapnext/tapnext_lru_modules.py``
and torchvision's ``EncoderBlock``), so state dicts load key for key. Unlike the official modules every
parameter is initialised here (RecurrentGemma's schemes for the recurrent block, torchvision's for the ViT
block), and the recurrence has two exact forms: :func:`sequential_scan` (a loop over time, what inference
runs) and :func:`parallel_scan` (log-depth, what training runs). The parallel form needs no custom backward:
it is built from differentiable tensor ops only, so its gradients are autograd's own and never divide by the
decay (the official ``pscan.py`` backward does, and replaces a tiny divisor by a factor 1e5).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

MAX_SQRT_GRADIENT = 1000.0
CONV1D_TEMPORAL_WIDTH = 4


class BlockCache(NamedTuple):
    """One block's recurrent state: RG-LRU state [tokens, lru_width] (float32 or wider) and the last
    ``CONV1D_TEMPORAL_WIDTH - 1`` inputs of the temporal convolution [tokens, 3, lru_width]. ``fresh`` (bool
    [tokens], or None) marks tokens whose stream starts at this call although a state is given (all zeros): they
    take their first step as without a cache, which lets an exported step graph always carry a state."""

    rg_lru_state: torch.Tensor
    conv1d_state: torch.Tensor
    fresh: torch.Tensor | None = None


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (JAX's default, which the recurrent block was trained with)."""
    return F.gelu(x, approximate="tanh")


# -- the linear recurrence h_t = a_t * h_{t-1} + x_t ---------------------------------------------------------


def sequential_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states h [N,T,D] of ``h_t = a_t * h_{t-1} + x_t`` for a, x [N,T,D], from ``h0`` [N,D] (zeros if None),
    one time step after another."""
    h = torch.zeros_like(x[:, 0]) if h0 is None else h0
    states = []
    for t in range(x.shape[1]):
        h = a[:, t] * h + x[:, t]
        states.append(h)
    return torch.stack(states, dim=1)


def parallel_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The same states as :func:`sequential_scan` in O(log T) sequential steps and O(T) work: neighbouring steps
    are composed pairwise ((a1, x1) after (a0, x0) is (a1 a0, a1 x0 + x1)), the odd states are scanned at half
    the length, and the even ones follow from them."""
    if h0 is not None:
        x = torch.cat([a[:, :1] * h0[:, None] + x[:, :1], x[:, 1:]], dim=1)
    return _scan_from_zero(a, x)


def _scan_from_zero(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    n, length = x.shape[:2]
    if length == 1:
        return x
    even = 2 * (length // 2)
    a0, a1 = a[:, 0:even:2], a[:, 1:even:2]
    x0, x1 = x[:, 0:even:2], x[:, 1:even:2]
    odd_states = _scan_from_zero(a1 * a0, a1 * x0 + x1)  # h_1, h_3, ...
    previous = torch.cat([torch.zeros_like(odd_states[:, :1]), odd_states[:, :-1]], dim=1)
    even_states = a0 * previous + x0  # h_0, h_2, ...
    states = torch.stack([even_states, odd_states], dim=2).reshape(n, even, *x.shape[2:])
    if even < length:
        states = torch.cat([states, a[:, -1:] * states[:, -1:] + x[:, -1:]], dim=1)
    return states


def rnn_scan(
    x: torch.Tensor, a: torch.Tensor, h0: torch.Tensor | None, parallel: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs [N,T,D] in x's dtype, last state [N,D]) of the recurrence, accumulated in float32 (or wider).

    A single step without a state returns x itself, as the official code does."""
    acc = torch.promote_types(x.dtype, torch.float32)
    if x.shape[1] == 1 and h0 is None:
        return x, x[:, 0].to(acc)
    h0 = None if h0 is None else h0.to(acc)
    if x.shape[1] == 1:
        y = a.to(acc) * h0[:, None] + x.to(acc)
    else:
        y = (parallel_scan if parallel else sequential_scan)(a.to(acc), x.to(acc), h0)
    return y.to(x.dtype), y[:, -1]


class SqrtBoundDerivative(torch.autograd.Function):
    """``sqrt`` whose gradient is clipped at ``MAX_SQRT_GRADIENT`` (keeps bfloat16 training finite)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sqrt(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_output / torch.sqrt(torch.clip(4.0 * x, min=1 / MAX_SQRT_GRADIENT**2))


# -- layers ------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """RMS norm with a zero-initialised ``scale`` applied as ``1 + scale``."""

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x * torch.rsqrt(torch.mean(torch.square(x), dim=-1, keepdim=True) + self.eps)
        return normed * (self.scale + 1)


class BlockDiagonalLinear(nn.Module):
    """A linear map made of ``num_blocks`` independent square blocks: ``w`` [H,i,i], ``b`` [H,i]."""

    def __init__(self, width: int, num_blocks: int, w_init_variance_scale: float = 1.0):
        super().__init__()
        self.num_blocks = num_blocks
        block_width = width // num_blocks
        self.w = nn.Parameter(
            torch.randn(num_blocks, block_width, block_width) * math.sqrt(w_init_variance_scale / block_width)
        )
        self.b = nn.Parameter(torch.zeros(num_blocks, block_width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(-1, (self.num_blocks, -1))
        return (torch.einsum("...hi,hij->...hj", x, self.w) + self.b).flatten(-2)


class RGLRU(nn.Module):
    """Real-Gated Linear Recurrent Unit: ``h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t)`` with input- and
    state-dependent gates; the first step of a stream (no cache) takes ``i_0 x_0`` unscaled."""

    def __init__(self, width: int, num_heads: int, w_init_variance_scale: float = 1.0):
        super().__init__()
        self.a_param = nn.Parameter(_ring_init(width, min_rad=0.9, max_rad=0.999))
        self.input_gate = BlockDiagonalLinear(width, num_heads, w_init_variance_scale)
        self.a_gate = BlockDiagonalLinear(width, num_heads, w_init_variance_scale)

    def forward(
        self,
        x: torch.Tensor,
        cache: torch.Tensor | None = None,
        parallel: bool = False,
        fresh: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gate_x = torch.sigmoid(self.input_gate(x))
        gate_a = torch.sigmoid(self.a_gate(x))
        log_a = -8.0 * gate_a * F.softplus(self.a_param)
        a = torch.exp(log_a)
        squared = 1 - torch.exp(2 * log_a)
        # the bounded gradient only matters with gradients; plain sqrt keeps traced graphs free of Python functions
        multiplier = SqrtBoundDerivative.apply(squared) if torch.is_grad_enabled() else torch.sqrt(squared)
        if cache is None:  # the stream starts here: no decay of an earlier state to make up for
            multiplier = torch.cat([torch.ones_like(multiplier[:, :1]), multiplier[:, 1:]], dim=1)
        elif fresh is not None:  # so do these tokens' streams
            first = torch.where(fresh[:, None, None], torch.ones_like(multiplier[:, :1]), multiplier[:, :1])
            multiplier = torch.cat([first, multiplier[:, 1:]], dim=1)
        return rnn_scan(x * gate_x * multiplier.to(x.dtype), a, cache, parallel)


def _ring_init(width: int, min_rad: float, max_rad: float, eps: float = 1e-8) -> torch.Tensor:
    """``a_param`` such that the decay at gate 1 lies uniformly (by area) on the ring [min_rad, max_rad]."""
    radius_squared = torch.empty(width).uniform_(min_rad**2 + eps, max_rad**2 + eps)
    return torch.log(torch.expm1(-0.5 * torch.log(radius_squared)))  # softplus^-1(-log(radius))


class CausalConv1D(nn.Module):
    """Depthwise causal convolution over time: ``w`` [temporal_width, width] (the last row weighs the current
    step), ``b`` [width]; the cache holds the previous ``temporal_width - 1`` inputs."""

    def __init__(self, width: int, temporal_width: int = CONV1D_TEMPORAL_WIDTH, w_init_variance_scale: float = 0.01):
        super().__init__()
        self.temporal_width = temporal_width
        self.w = nn.Parameter(torch.randn(temporal_width, width) * math.sqrt(w_init_variance_scale / temporal_width))
        self.b = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if cache is None:
            cache = x.new_zeros(x.shape[0], self.temporal_width - 1, x.shape[2])
        x = torch.cat([cache.to(x.dtype), x], dim=1)
        if x.shape[1] == self.temporal_width:  # one step
            y = (x * self.w.unsqueeze(0)).sum(1, keepdim=True) + self.b[None, None, :]
        else:
            y = F.conv1d(x.transpose(1, 2), self.w.t().unsqueeze(1), self.b, groups=x.shape[-1]).transpose(1, 2)
        return y.contiguous(), x[:, 1 - self.temporal_width :]


class Einsum(nn.Module):
    """A parameterised einsum ``eqn(x, w) + b``."""

    def __init__(self, w_shape: tuple[int, ...], b_shape: tuple[int, ...], eqn: str, fan_in: int):
        super().__init__()
        self.eqn = eqn
        self.w = nn.Parameter(torch.randn(w_shape) / math.sqrt(fan_in))
        self.b = nn.Parameter(torch.zeros(b_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.eqn, x, self.w) + self.b


def _normal_linear(in_features: int, out_features: int, variance_scale: float = 1.0) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    with torch.no_grad():
        layer.weight.normal_(0.0, math.sqrt(variance_scale / in_features))
        layer.bias.zero_()
    return layer


class RecurrentBlock(nn.Module):
    """Griffin's recurrent block: ``linear_out(RG-LRU(conv(linear_x(x))) * gelu(linear_y(x)))``."""

    def __init__(self, width: int, num_heads: int, lru_width: int, final_w_init_variance_scale: float = 1.0):
        super().__init__()
        self.linear_y = _normal_linear(width, lru_width)
        self.linear_x = _normal_linear(width, lru_width)
        self.linear_out = _normal_linear(lru_width, width, final_w_init_variance_scale)
        self.conv_1d = CausalConv1D(lru_width)
        self.rg_lru = RGLRU(lru_width, num_heads)

    def forward(
        self, x: torch.Tensor, cache: BlockCache | None = None, parallel: bool = False
    ) -> tuple[torch.Tensor, BlockCache]:
        y = gelu(self.linear_y(x))
        x, conv1d_state = self.conv_1d(self.linear_x(x), None if cache is None else cache.conv1d_state)
        if cache is None:
            x, rg_lru_state = self.rg_lru(x, None, parallel)
        else:
            x, rg_lru_state = self.rg_lru(x, cache.rg_lru_state, parallel, cache.fresh)
        return self.linear_out(x * y), BlockCache(rg_lru_state, conv1d_state)


class MLPBlock(nn.Module):
    """Gated MLP: ``ffw_down(gelu(x w0 + b0) * (x w1 + b1))``."""

    def __init__(self, width: int, expanded_width: int, final_w_init_variance_scale: float = 1.0):
        super().__init__()
        self.ffw_up = Einsum((2, width, expanded_width), (2, 1, 1, expanded_width), "...td,cdD->c...tD", width)
        self.ffw_down = _normal_linear(expanded_width, width, final_w_init_variance_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ffw_up(x)
        return self.ffw_down(gelu(out[0]) * out[1])


class ResidualBlock(nn.Module):
    """Pre-norm residual recurrent block then pre-norm residual gated MLP, over tokens [N,T,C]."""

    def __init__(self, width: int, num_heads: int, lru_width: int, final_w_init_variance_scale: float):
        super().__init__()
        self.temporal_pre_norm = RMSNorm(width)
        self.recurrent_block = RecurrentBlock(width, num_heads, lru_width, final_w_init_variance_scale)
        self.channel_pre_norm = RMSNorm(width)
        self.mlp_block = MLPBlock(width, 4 * width, final_w_init_variance_scale)

    def forward(
        self, x: torch.Tensor, cache: BlockCache | None = None, parallel: bool = False
    ) -> tuple[torch.Tensor, BlockCache]:
        recurrent, cache = self.recurrent_block(self.temporal_pre_norm(x), cache, parallel)
        residual = recurrent + x
        return self.mlp_block(self.channel_pre_norm(residual)) + residual, cache


class ViTBlock(nn.Module):
    """A pre-norm transformer encoder block (torchvision's ``EncoderBlock`` layout: ``ln_1``, ``self_attention``,
    ``ln_2``, ``mlp.0`` / ``mlp.3``), over tokens [N,L,C]."""

    def __init__(self, width: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, width))
        for layer in (self.mlp[0], self.mlp[3]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = self.self_attention(y, y, y, need_weights=False)[0] + x
        return self.mlp(self.ln_2(x)) + x


class TRecViTBlock(nn.Module):
    """A TRecViT block (https://arxiv.org/abs/2412.14294) on tokens [B,T,N,C]: the recurrent block runs over
    time for every token, the ViT block over the tokens of every frame."""

    def __init__(self, depth: int, width: int, num_heads: int, lru_width: int):
        super().__init__()
        self.ssm_block = ResidualBlock(width, num_heads, lru_width, final_w_init_variance_scale=2.0 / depth)
        self.vit_block = ViTBlock(width, num_heads, 4 * width)

    def forward(
        self, x: torch.Tensor, cache: BlockCache | None = None, parallel: bool = False
    ) -> tuple[torch.Tensor, BlockCache]:
        b, t, n, c = x.shape
        x = x.transpose(1, 2).reshape(b * n, t, c)
        x, cache = self.ssm_block(x, cache, parallel)
        x = x.reshape(b, n, t, c).transpose(1, 2).reshape(b * t, n, c)
        return self.vit_block(x).reshape(b, t, n, c), cache
