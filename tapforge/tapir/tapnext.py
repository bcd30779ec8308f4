"""TAPNext (Zholus et al. 2025, "TAPNext: Tracking Any Point as Next Token Prediction") in PyTorch.

The video's patches and one token per query point go through TRecViT blocks (``tapnext_blocks``): a linear
recurrence over time for every token, then attention over the tokens of a frame. A query enters as a "point
query" token (a learned token plus the sine-cosine embedding of its position) on its own frame, a "mask" token
on the frames after it (where the track is predicted) and an "unknown" token before it. Two heads read each
point token: 2 x 256 logits of the x and y position (a soft argmax within 20 bins of the peak gives the
position) and a visibility logit. Because the model only looks back in time it tracks online as well: feed
frames one at a time (or in chunks) with the carried recurrent state (:meth:`TAPNext.online_step`).

Constructor arguments, module names and ``state_dict()`` keys and shapes are those of the official torch
``TAPNext`` (``tapnet/tapnext/tapnext_torch.py``), so its checkpoints load strictly; see
``tapforge.tapir.tapnext_checkpoint`` for the JAX ``.npz`` files. Conventions are tapforge's: video
[B,T,H,W,3] in [-1, 1], queries [B,Q,3] (t, y, x) pixels; outputs (:meth:`TAPNext.forward`):

* ``tracks`` [B,Q,T,2] (x, y) pixels. The 256 position bins span the frame's width and height, so a frame of
  another size than ``image_size`` is tracked in its own pixels (the official model answers in 256-bin units);
* ``occlusion`` [B,Q,T]: the negated visibility logit (occluded where > 0);
* ``expected_dist`` [B,Q,T]: ``logit(1 - certainty)``, where certainty is the probability mass of the position
  logits within 8 bins of the predicted point (the official ``tracker_certainty``; its disk mask is transposed
  against its window of probabilities, which is not copied here). With TAPIR's ``postprocess`` the visibility is
  then ``sigmoid(visible) * certainty``, the official "visible and certain" rule;
* ``coordinate_logits`` [B,Q,T,2,256]: the position logits, x first (the official head emits y first).

The two heads run at the model's parameter precision even under autocast (the JAX model reads out in float32;
the official torch code only casts the position head's input).

Query frames are rounded to whole frames (a fractional frame, which the official code silently drops, is never
shown as a query). Queries attend to each other and to the video, so the outputs of one query depend on the
others: unlike TAPIR, TAPNext cannot split its queries into chunks without changing its answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tapforge.base.errors import TapforgeError
from tapforge.tapir.tapnext_blocks import CONV1D_TEMPORAL_WIDTH, BlockCache, TRecViTBlock

NUM_BINS = 256  # position bins per axis: the coordinate head's 512 outputs are y bins then x bins
SOFT_ARGMAX_THRESHOLD = 20
SOFTMAX_TEMPERATURE = 0.5
CERTAINTY_RADIUS = 8  # bins
HEAD_WIDTH = 256


def posemb_sincos_2d(height: int, width: int, channels: int, temperature: float = 10_000.0) -> torch.Tensor:
    """Sine-cosine embedding [1, height*width, channels] of every pixel (row-major; sin x, cos x, sin y, cos y),
    computed in float64 and stored in float32 as the official code does (MoCo v3)."""
    if channels % 4:
        raise TapforgeError(f"TAPNext width must be a multiple of 4 for its position embedding, got {channels}")
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    quarter = channels // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / max(quarter - 1, 1))
    y = y.reshape(-1, 1) * omega
    x = x.reshape(-1, 1) * omega
    return torch.cat([torch.sin(x), torch.cos(x), torch.sin(y), torch.cos(y)], dim=1).float()[None]


def _mlp_head(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, HEAD_WIDTH),
        nn.LayerNorm(HEAD_WIDTH),
        nn.GELU(),
        nn.Linear(HEAD_WIDTH, HEAD_WIDTH),
        nn.LayerNorm(HEAD_WIDTH),
        nn.GELU(),
        nn.Linear(HEAD_WIDTH, out),
    )


@dataclasses.dataclass
class TAPNextState:
    """What online tracking carries from one call of :meth:`TAPNext.online_step` to the next.

    ``step``: frames seen so far; ``query_points`` [B,Q,3]: every query so far, (t, y, x) with t the stream's
    frame index; ``hidden``: per block, the recurrent state of the B * (patches + Q) tokens;
    ``frame_size``: the (height, width) of the stream's frames."""

    step: int
    query_points: torch.Tensor
    hidden: list[BlockCache]
    frame_size: tuple[int, int]


class TAPNext(nn.Module):
    """TAPNext; the defaults are the released TAPNext / BootsTAPNext / TAPNext++ configuration (ViT-B, 12 blocks).

    Args:
      image_size: (height, width) the model was trained at; it sizes the learned patch position embedding
        (bicubically resized for frames of another size, as the official code does) and the query embedding.
      width: token channels. patch_size: (height, width) of a patch. num_heads: attention heads, also the
        number of diagonal blocks of the RG-LRU gates. lru_width: channels of the recurrence. depth: blocks.
      use_checkpointing: recompute each block in the backward pass (gradient checkpointing) to save memory.

    In training mode (``model.train()``) the recurrence runs as a parallel scan, in eval mode as a loop over
    time, as in the official code; both give the same result up to rounding.
    """

    def __init__(
        self,
        image_size: Sequence[int] = (256, 256),
        width: int = 768,
        patch_size: Sequence[int] = (8, 8),
        num_heads: int = 12,
        lru_width: int = 768,
        depth: int = 12,
        use_checkpointing: bool = False,
    ):
        super().__init__()
        image_size = tuple(int(s) for s in image_size)
        patch_size = tuple(int(s) for s in patch_size)
        problems = []
        if len(image_size) != 2 or len(patch_size) != 2 or any(s % p for s, p in zip(image_size, patch_size)):
            problems.append(f"image_size {image_size} must be (height, width) multiples of patch_size {patch_size}")
        if width % num_heads or lru_width % num_heads or width % 4:
            problems.append(f"width {width} and lru_width {lru_width} must be multiples of num_heads {num_heads}")
        if problems:
            raise TapforgeError("TAPNext: " + "; ".join(problems) + "; fix: use the defaults or matching values")
        self.image_size = image_size
        self.width = width
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.lru_width = lru_width
        self.depth = depth
        self.use_checkpointing = use_checkpointing

        self.lin_proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(TRecViTBlock(depth, width, num_heads, lru_width) for _ in range(depth))
        self.encoder_norm = nn.LayerNorm(width)
        token_std = 1 / math.sqrt(width)  # the JAX model's initialisers
        self.mask_token = nn.Parameter(torch.randn(1, 1, 1, width) * token_std)
        self.unknown_token = nn.Parameter(torch.randn(1, 1, width) * token_std)
        self.point_query_token = nn.Parameter(torch.randn(1, 1, 1, width) * token_std)
        patches = (image_size[0] // patch_size[0]) * (image_size[1] // patch_size[1])
        self.image_pos_emb = nn.Parameter(torch.randn(1, patches, width) * token_std)
        self.register_buffer("query_pos_embed", posemb_sincos_2d(image_size[0], image_size[1], width))
        self.visible_head = _mlp_head(width, 1)
        self.coordinate_head = _mlp_head(width, 2 * NUM_BINS)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (``TAPNext(**config)`` rebuilds it) and ``architecture`` for the loaders."""
        return {
            "architecture": "tapnext",
            "image_size": self.image_size,
            "width": self.width,
            "patch_size": self.patch_size,
            "num_heads": self.num_heads,
            "lru_width": self.lru_width,
            "depth": self.depth,
            "use_checkpointing": self.use_checkpointing,
        }

    # -- public entry points -----------------------------------------------------------------------------

    def forward(
        self,
        video: torch.Tensor,
        query_points: torch.Tensor,
        is_training: bool = False,
        query_chunk_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Track ``query_points`` [B,Q,3] (t, y, x) through ``video`` [B,T,H,W,3] in [-1, 1]; see the module
        docstring for the outputs. ``is_training`` and ``query_chunk_size`` are accepted for the trackers'
        shared interface and change nothing (the scan follows ``self.training``; queries are never chunked)."""
        _check_inputs(video, query_points, self.patch_size)
        out, _ = self._run(video, query_points.to(video.dtype), None)
        return out

    def online_step(
        self,
        frames: torch.Tensor,
        state: TAPNextState | None = None,
        query_points: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], TAPNextState]:
        """Track through the next ``frames`` [B,t,H,W,3] of a stream (t >= 1), carrying ``state`` (None on the
        first call); returns the outputs of :meth:`forward` for these frames and every query so far, and the
        new state.

        ``query_points`` [B,M,3] (t, y, x), t the stream's frame index, adds queries; t may lie in the future
        (the query is shown when its frame comes), not in the past. Queries given on the first call (with any
        t) give the outputs of :meth:`forward` on the whole video. A query added on a later call starts from an
        empty recurrent state there, while offline it would have carried "unknown" tokens from frame 0; since
        queries attend to one another, the other queries' outputs from then on differ slightly from offline.
        """
        if frames.dim() != 5 or frames.shape[-1] != 3:
            raise TapforgeError(
                f"TAPNext.online_step takes frames [B,t,H,W,3], got {tuple(frames.shape)}; fix: add the time axis"
            )
        batch, frame_size = frames.shape[0], (frames.shape[2], frames.shape[3])
        new = frames.new_zeros(batch, 0, 3) if query_points is None else query_points.to(frames.dtype)
        _check_inputs(frames, new, self.patch_size)
        if state is not None and (state.frame_size != frame_size or state.query_points.shape[0] != batch):
            raise TapforgeError(
                f"frames {tuple(frames.shape)} do not continue the stream of {state.frame_size} frames and batch "
                f"{state.query_points.shape[0]}; fix: keep the frame size and batch, or start a new stream"
            )
        step = 0 if state is None else state.step
        past = torch.round(new[..., 0]) < step
        if past.any():
            raise TapforgeError(
                f"{int(past.sum())} of the added queries lie on frames before frame {step}, which the stream has "
                "passed; fix: add queries on the current frame or a later one"
            )
        if state is None:
            queries, hidden = new, None
        elif new.shape[1]:
            queries = torch.cat([state.query_points, new], dim=1)
            hidden = [_add_tokens(cache, batch, new.shape[1]) for cache in state.hidden]
        else:
            queries, hidden = state.query_points, state.hidden
        relative = torch.cat([queries[..., :1] - step, queries[..., 1:]], dim=-1)
        out, hidden = self._run(frames, relative, hidden)
        return out, TAPNextState(step + frames.shape[1], queries, hidden, frame_size)

    def initial_state(
        self, batch: int, num_queries: int, frame_size: Sequence[int], dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero recurrent state for :meth:`tensor_step`: [depth, batch * (patches + queries), lru_width] and
        [depth, batch * (patches + queries), 3, lru_width], for frames of ``frame_size`` (height, width)."""
        patches = (frame_size[0] // self.patch_size[0]) * (frame_size[1] // self.patch_size[1])
        tokens = batch * (patches + num_queries)
        return (
            torch.zeros(self.depth, tokens, self.lru_width, dtype=torch.promote_types(dtype, torch.float32)),
            torch.zeros(self.depth, tokens, CONV1D_TEMPORAL_WIDTH - 1, self.lru_width, dtype=dtype),
        )

    def tensor_step(
        self,
        frames: torch.Tensor,
        query_points: torch.Tensor,
        step: torch.Tensor,
        rg_lru_state: torch.Tensor,
        conv1d_state: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """:meth:`online_step` for a fixed set of queries, with the state as plain tensors (what a traced or exported
        graph carries): ``frames`` [B,t,H,W,3]; ``query_points`` [B,Q,3] (t, y, x), t the stream's frame index;
        ``step`` a 0-d tensor, the frames seen so far (at 0 the stream starts and the given state is not read);
        the state as :meth:`initial_state` lays it out. Returns the outputs for these frames and the new state; a
        stream of calls gives the outputs of :meth:`online_step` with the queries on its first call."""
        _check_inputs(frames, query_points, self.patch_size)
        start = step.reshape(()) == 0
        fresh = start.expand(rg_lru_state.shape[1])
        hidden = [
            BlockCache(
                torch.where(start, torch.zeros_like(rg_lru_state[i]), rg_lru_state[i]),
                torch.where(start, torch.zeros_like(conv1d_state[i]), conv1d_state[i]),
                fresh,
            )
            for i in range(self.depth)
        ]
        relative = torch.cat([query_points[..., :1] - step.to(query_points.dtype), query_points[..., 1:]], dim=-1)
        out, hidden = self._run(frames, relative, hidden)
        return out, torch.stack([c.rg_lru_state for c in hidden]), torch.stack([c.conv1d_state for c in hidden])

    # -- the model ---------------------------------------------------------------------------------------

    def _run(
        self, video: torch.Tensor, query_points: torch.Tensor, hidden: list[BlockCache] | None
    ) -> tuple[dict[str, torch.Tensor], list[BlockCache]]:
        """Outputs and new recurrent state for ``video`` [B,T,H,W,3] and queries whose t counts from its first
        frame."""
        b, t, height, width, _ = video.shape
        tokens = self.lin_proj(video.reshape(b * t, height, width, 3).permute(0, 3, 1, 2))
        _, c, h, w = tokens.shape
        tokens = tokens.reshape(b, t, c, h * w).transpose(2, 3) + self._video_pos_emb(h, w)
        point_tokens = self.embed_queries(t, query_points, (height, width))
        x = torch.cat([tokens, point_tokens], dim=2)
        parallel = self.training
        new_hidden = []
        for block, cache in zip(self.blocks, hidden or [None] * len(self.blocks)):
            if self.use_checkpointing and torch.is_grad_enabled():
                x, cache = checkpoint(block, x, cache, parallel, use_reentrant=False)
            else:
                x, cache = block(x, cache, parallel)
            new_hidden.append(cache)
        x = self.encoder_norm(x)
        return self._heads(x[:, :, h * w :], (height, width)), new_hidden

    def _video_pos_emb(self, h: int, w: int) -> torch.Tensor:
        """The learned patch position embedding [1,1,h*w,C], bicubically resized to an h x w patch grid if it
        was learned for another (square) grid, as the official code does."""
        native = self.image_pos_emb.shape[1]
        if h * w == native:
            return self.image_pos_emb.unsqueeze(0)
        side = math.isqrt(native)
        if side * side != native:
            raise TapforgeError(
                f"TAPNext learned {native} patch positions, not a square grid, so frames of another size than "
                f"{self.image_size} cannot be tracked; fix: resize the video to {self.image_size}"
            )
        grid = self.image_pos_emb.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(1, 1, h * w, -1).to(self.image_pos_emb.dtype)

    def embed_queries(self, num_frames: int, query_points: torch.Tensor, frame_size: Sequence[int]) -> torch.Tensor:
        """Point tokens [B,T,Q,C]: the point query token plus the embedding of (y, x) on the query's frame, the
        mask token after it, the unknown token before it; t counts from the first of the ``num_frames``."""
        b, q, _ = query_points.shape
        c = self.width
        if q == 0:
            return self.mask_token.new_zeros(b, num_frames, 0, c)
        positions = query_points[..., 1:] / torch.tensor(frame_size, device=query_points.device) * 2 - 1
        embedding = self.query_pos_embed.view(1, self.image_size[0], self.image_size[1], c).permute(0, 3, 2, 1)
        # grid_sample reads (x, y) as (last, second-last) axis: the embedding is laid out [1, C, W, H] for (y, x)
        sampled = F.grid_sample(embedding, positions.reshape(1, 1, b * q, 2), align_corners=False)
        point_query = self.point_query_token + sampled.reshape(c, b, q).permute(1, 2, 0)[:, None]
        query_frame = torch.round(query_points[..., 0])[:, None, :, None]  # [B,1,Q,1]
        frames = torch.arange(num_frames, device=query_points.device)[None, :, None, None]
        tokens = torch.where(frames == query_frame, point_query, self.mask_token)
        return torch.where(frames < query_frame, self.unknown_token[:, :, None], tokens)

    def _heads(self, x: torch.Tensor, frame_size: Sequence[int]) -> dict[str, torch.Tensor]:
        """Outputs [B,Q,T,...] from the point tokens [B,T,Q,C] of frames of ``frame_size`` (height, width)."""
        dtype = self.coordinate_head[0].weight.dtype  # the heads run at full precision, also under autocast
        with torch.autocast(x.device.type, enabled=False):
            logits = self.coordinate_head(x.to(dtype))  # y bins, then x bins
            visible_logits = self.visible_head(x.to(dtype))[..., 0]
        index = torch.arange(NUM_BINS, device=x.device)
        axes = []
        for axis_logits in logits.chunk(2, dim=-1):
            near_peak = (axis_logits.argmax(dim=-1, keepdim=True) - index).abs() <= SOFT_ARGMAX_THRESHOLD
            probs = F.softmax(axis_logits * SOFTMAX_TEMPERATURE, dim=-1) * near_peak.float()
            probs = probs / probs.sum(dim=-1, keepdim=True)
            axes.append(torch.sum(probs * index, dim=-1))
        bins_yx = torch.stack(axes, dim=-1) + 0.5
        certainty = tracker_certainty(bins_yx, logits)
        scale = torch.tensor([frame_size[1], frame_size[0]], device=x.device, dtype=bins_yx.dtype) / NUM_BINS
        return {
            "tracks": (bins_yx.flip(-1) * scale).transpose(1, 2),
            "occlusion": (-visible_logits).transpose(1, 2),
            "expected_dist": torch.logit(1 - certainty, eps=1e-6).transpose(1, 2),
            "coordinate_logits": logits.unflatten(-1, (2, NUM_BINS)).flip(-2).transpose(1, 2),
        }


def tracker_certainty(
    bins_yx: torch.Tensor, logits: torch.Tensor, radius: int = CERTAINTY_RADIUS, num_bins: int = NUM_BINS
) -> torch.Tensor:
    """Probability that the point lies within ``radius`` bins of ``bins_yx`` [...,2] (y, x), under the product of
    the softmaxes of the y and x ``logits`` [..., 2*num_bins]; only a (2 radius + 1)^2 window is summed."""
    size = 2 * radius + 1
    offsets = torch.arange(size, device=logits.device)
    windows, centres = [], []
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    for coord, axis_logits in zip(bins_yx.unbind(-1), logits.chunk(2, dim=-1)):
        start = torch.floor(coord - radius - 0.5).long().clamp(0, num_bins - size)
        index = start[..., None] + offsets
        windows.append(F.softmax(axis_logits, dim=-1).gather(-1, index))
        centres.append(index + 0.5 - coord[..., None])
    inside = centres[0][..., :, None] ** 2 + centres[1][..., None, :] ** 2 <= radius**2 + 1e-8
    return (windows[0][..., :, None] * windows[1][..., None, :] * inside).sum(dim=(-2, -1))


def track_both_ways(model: TAPNext, video: torch.Tensor, query_points: torch.Tensor) -> dict[str, torch.Tensor]:
    """``model(video, query_points)`` with every frame before a query's frame tracked on the time-reversed video
    instead (the query on frame T - 1 - t there), as the official strided evaluation does: TAPNext only looks back
    in time, so one pass knows nothing of a point before its query shows it. Queries on frame 0 need no second
    pass, and none is run when all are there (outside tracing)."""
    forward = model(video, query_points)
    query_frame = torch.round(query_points[..., 0])  # as embed_queries rounds it
    if not torch.jit.is_tracing() and not bool((query_frame > 0).any()):
        return forward
    num_frames = video.shape[1]
    reversed_queries = torch.cat([num_frames - 1 - query_frame[..., None], query_points[..., 1:]], dim=-1)
    backward = model(video.flip(1), reversed_queries)
    before = torch.arange(num_frames, device=video.device) < query_frame[..., None]  # [B,Q,T]
    out = {}
    for key, value in forward.items():
        mask = before.reshape(before.shape + (1,) * (value.dim() - before.dim()))
        out[key] = torch.where(mask, backward[key].flip(2), value)
    return out


def _add_tokens(cache: BlockCache, batch: int, count: int) -> BlockCache:
    """The recurrent state with ``count`` fresh (zero) point tokens appended to each batch element."""

    def extend(state: torch.Tensor) -> torch.Tensor:
        state = state.reshape(batch, -1, *state.shape[1:])
        zeros = state.new_zeros(batch, count, *state.shape[2:])
        return torch.cat([state, zeros], dim=1).flatten(0, 1)

    return BlockCache(extend(cache.rg_lru_state), extend(cache.conv1d_state))


def _check_inputs(video: torch.Tensor, query_points: torch.Tensor, patch_size: Sequence[int]) -> None:
    if video.dim() != 5 or video.shape[-1] != 3 or query_points.dim() != 3 or query_points.shape[-1] != 3:
        raise TapforgeError(
            f"TAPNext takes video [B,T,H,W,3] and query_points [B,Q,3], got {tuple(video.shape)} and "
            f"{tuple(query_points.shape)}; fix: stack frames as [batch, time, height, width, rgb] and queries as "
            "(t, y, x) rows"
        )
    if query_points.shape[0] != video.shape[0]:
        raise TapforgeError(
            f"video batch {video.shape[0]} and query_points batch {query_points.shape[0]} differ; fix: one query "
            "set per video"
        )
    if video.shape[2] % patch_size[0] or video.shape[3] % patch_size[1]:
        raise TapforgeError(
            f"TAPNext frames {video.shape[2]}x{video.shape[3]} are not multiples of its patch size {tuple(patch_size)};"
            " fix: resize the video, e.g. to 256x256"
        )
