"""The TAPIR point tracker (PyTorch), checkpoint-compatible with the official tapnet model.

``TAPIR`` has the official module tree, so tapnet ``.pt`` checkpoints load with ``strict=True``
(TAPIR, BootsTAPIR and causal BootsTAPIR configs) and ours load into the official model. Its
outputs equal the official ones on square inputs. Unlike the official PyTorch port it trains as
the JAX model does: the soft argmax is differentiable, and in training only the first (randomly
chosen) chunk of queries back-propagates through the refinement iterations. Bilinear sampling is
correct on non-square feature grids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tapforge.base.errors import TapforgeError
from tapforge.tapir import nets

HIGHRES_DIM = 128
LOWRES_DIM = 256
SOFT_ARGMAX_THRESHOLD = 5.0
# Frame chunking keeps each cost-volume step under this many grid cells (x16 channels in memory).
COST_VOLUME_CELLS = 1 << 22


def postprocess(occlusion: torch.Tensor, expected_dist: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(visibility probability, occluded bool) from occlusion and expected-distance logits (None for a model
    without an uncertainty head, such as TAP-Net: visibility is then 1 - sigmoid(occlusion))."""
    visibility = 1 - torch.sigmoid(occlusion)
    if expected_dist is not None:
        visibility = visibility * (1 - torch.sigmoid(expected_dist))
    return visibility, visibility <= 0.5


class FeatureGrids(NamedTuple):
    """Per-frame features of a video: one entry for the initial estimate, then one per refinement
    resolution. ``lowres`` [B, T, H/8, W/8, 256] and ``hires`` [B, T, H/4, W/4, 128] are unit-norm;
    ``resolutions`` are the (height, width) the video was resized to."""

    lowres: tuple[torch.Tensor, ...]
    hires: tuple[torch.Tensor, ...]
    resolutions: tuple[tuple[int, int], ...]


class QueryFeatures(NamedTuple):
    """Features sampled at the query points ([B, N, 256] and [B, N, 128]), per resolution."""

    lowres: tuple[torch.Tensor, ...]
    hires: tuple[torch.Tensor, ...]
    resolutions: tuple[tuple[int, int], ...]


def _check_resolution(name: str, resolution: Sequence[int]) -> tuple[int, int]:
    res = tuple(int(r) for r in resolution)
    if len(res) != 2 or any(r <= 0 or r % 8 for r in res):
        raise TapforgeError(
            f"{name} must be (height, width) with positive multiples of 8, got {tuple(resolution)}; "
            "fix: round it to a multiple of 8, e.g. (256, 256)"
        )
    return res


class TAPIR(nn.Module):
    """TAPIR: a TAP-Net cost-volume initialisation refined by a temporal PIPs mixer.

    The defaults are the TAPIR config; BootsTAPIR is ``pyramid_level=1, extra_convs=True,
    softmax_temperature=10.0`` and causal (online) BootsTAPIR adds ``use_casual_conv=True``
    (the official spelling). ``model.config`` rebuilds the model: ``TAPIR(**model.config)``.

    Args:
      pyramid_level: extra average-pooled levels of the low-resolution features used by the
        refinement correlations.
      extra_convs: the five extra residual convs on the low-resolution features (BootsTAPIR).
      softmax_temperature: sharpness of the cost-volume heatmaps.
      use_casual_conv: causal temporal convolutions in the mixer, for online tracking.
      initial_resolution: (height, width) the video is resized to for the initial estimate.
      num_pips_iter: refinement iterations per resolution.
      feature_extractor_chunk_size: frames per backbone call (bounds memory).
      mixer_hidden_dim, num_mixer_blocks, mixer_kernel_shape: mixer size (official: 512, 12, 3).
      patch_size: side of the correlation patch sampled around each estimate (odd).
      blocks_per_group: ResNet blocks per stage.
      gradient_checkpointing: recompute backbone activations in the backward pass (as the JAX
        training does) to save memory.
    """

    def __init__(
        self,
        pyramid_level: int = 0,
        extra_convs: bool = False,
        softmax_temperature: float = 20.0,
        use_casual_conv: bool = False,
        initial_resolution: Sequence[int] = (256, 256),
        num_pips_iter: int = 4,
        feature_extractor_chunk_size: int = 10,
        mixer_hidden_dim: int = 512,
        num_mixer_blocks: int = 12,
        mixer_kernel_shape: int = 3,
        patch_size: int = 7,
        blocks_per_group: Sequence[int] = (2, 2, 2, 2),
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        initial_resolution = _check_resolution("initial_resolution", initial_resolution)
        if patch_size <= 0 or patch_size % 2 == 0:
            raise TapforgeError(f"patch_size must be a positive odd number, got {patch_size}; fix: use 7")
        if pyramid_level < 0 or num_pips_iter < 1 or feature_extractor_chunk_size < 0:
            raise TapforgeError(
                f"pyramid_level >= 0, num_pips_iter >= 1 and feature_extractor_chunk_size >= 0 are required, got "
                f"{pyramid_level}, {num_pips_iter}, {feature_extractor_chunk_size}; fix: use 0 or 1, 4 and 10"
            )
        if len(blocks_per_group) != 4:
            raise TapforgeError(f"blocks_per_group needs 4 entries, got {blocks_per_group}; fix: use [2, 2, 2, 2]")
        self._config = dict(
            pyramid_level=int(pyramid_level),
            extra_convs=bool(extra_convs),
            softmax_temperature=float(softmax_temperature),
            use_casual_conv=bool(use_casual_conv),
            initial_resolution=list(initial_resolution),
            num_pips_iter=int(num_pips_iter),
            feature_extractor_chunk_size=int(feature_extractor_chunk_size),
            mixer_hidden_dim=int(mixer_hidden_dim),
            num_mixer_blocks=int(num_mixer_blocks),
            mixer_kernel_shape=int(mixer_kernel_shape),
            patch_size=int(patch_size),
            blocks_per_group=[int(b) for b in blocks_per_group],
            gradient_checkpointing=bool(gradient_checkpointing),
        )
        self.pyramid_level = int(pyramid_level)
        self.softmax_temperature = float(softmax_temperature)
        self.use_casual_conv = bool(use_casual_conv)
        self.initial_resolution = initial_resolution
        self.num_pips_iter = int(num_pips_iter)
        self.feature_extractor_chunk_size = int(feature_extractor_chunk_size)
        self.num_mixer_blocks = int(num_mixer_blocks)
        self.mixer_hidden_dim = int(mixer_hidden_dim)
        self.mixer_kernel_shape = int(mixer_kernel_shape)
        self.patch_size = int(patch_size)
        self.gradient_checkpointing = bool(gradient_checkpointing)

        self.resnet_torch = nets.ResNet(
            blocks_per_group=blocks_per_group,
            channels_per_group=(64, HIGHRES_DIM, 256, LOWRES_DIM),
            strides=(1, 2, 2, 1),
        )
        self.torch_cost_volume_track_mods = nn.ModuleDict(
            {
                "hid1": nn.Conv2d(1, 16, 3, 1, 1),
                "hid2": nn.Conv2d(16, 1, 3, 1, 1),
                "hid3": nn.Conv2d(16, 32, 3, 2, 0),
                "hid4": nn.Linear(32, 16),
                "occ_out": nn.Linear(16, 2),
            }
        )
        dim = 4 + HIGHRES_DIM + LOWRES_DIM
        self.torch_pips_mixer = nets.PIPSMLPMixer(
            dim + (self.pyramid_level + 2) * self.patch_size**2,
            dim,
            hidden_dim=mixer_hidden_dim,
            num_blocks=num_mixer_blocks,
            kernel_shape=mixer_kernel_shape,
            use_causal_conv=self.use_casual_conv,
        )
        self.extra_convs = nets.ExtraConvs() if extra_convs else None

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable): ``TAPIR(**model.config)`` rebuilds it."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._config.items()}

    def forward(
        self,
        video: torch.Tensor,
        query_points: torch.Tensor,
        is_training: bool = False,
        query_chunk_size: int | None = None,
        refinement_resolutions: Sequence[Sequence[int]] | None = None,
        frame_chunk_size: int | None = None,
    ) -> dict[str, Any]:
        """Track ``query_points`` through ``video``.

        Args:
          video: [B, T, H, W, 3] frames in [-1, 1].
          query_points: [B, N, 3] (t, y, x): frame index and raster pixel position.
          is_training: randomise which query chunk gets refinement gradients (others are
            stop-gradiented, as in the JAX training).
          query_chunk_size: queries processed together (default 32 in training, 64 otherwise).
          refinement_resolutions: (height, width) per refinement stage; default log-spaced from
            ``initial_resolution`` up to the video size.
          frame_chunk_size: frames per cost-volume step (default: sized to bound memory); with
            ``query_chunk_size`` it bounds the memory of long videos with many queries.

        Returns:
          ``tracks`` [B, N, T, 2] (x, y) pixels, ``occlusion`` and ``expected_dist`` logits
          [B, N, T] (higher = more likely occluded / far from the truth), and the lists
          ``unrefined_tracks``, ``unrefined_occlusion``, ``unrefined_expected_dist`` with the
          initial estimate and every refinement iterate except the last.
        """
        _check_inputs(video, query_points)
        query_points = query_points.float()
        feature_grids = self.get_feature_grids(video, is_training, refinement_resolutions)
        query_features = self.get_query_features(video, is_training, query_points, feature_grids)
        trajectories = self.estimate_trajectories(
            video.shape[-3:-1],
            is_training,
            feature_grids,
            query_features,
            query_points,
            query_chunk_size,
            frame_chunk_size=frame_chunk_size,
        )
        return self.combine_iterates(trajectories)

    def combine_iterates(self, trajectories: dict[str, list[torch.Tensor]]) -> dict[str, Any]:
        """Average the final iterate of each resolution; keep the others as ``unrefined_*``."""
        p = self.num_pips_iter
        out = {}
        for key in ("occlusion", "tracks", "expected_dist"):
            finals = trajectories[key][p::p]
            out[key] = finals[0] if len(finals) == 1 else torch.mean(torch.stack(finals), dim=0)
        for key in ("occlusion", "tracks", "expected_dist"):
            out[f"unrefined_{key}"] = trajectories[key][:-1]
        return out

    def get_feature_grids(
        self,
        video: torch.Tensor,
        is_training: bool = False,
        refinement_resolutions: Sequence[Sequence[int]] | None = None,
    ) -> FeatureGrids:
        """Backbone features of ``video`` [B, T, H, W, 3] at the initial and refinement resolutions."""
        del is_training
        if refinement_resolutions is None:
            refinement_resolutions = nets.generate_default_resolutions(video.shape[2:4], self.initial_resolution)
        resolutions = [self.initial_resolution] + [
            _check_resolution("refinement resolution", r) for r in refinement_resolutions
        ]
        lowres, hires = [], []
        for i, resolution in enumerate(resolutions):
            if i > 0 and resolution == resolutions[i - 1]:
                lowres.append(lowres[-1])
                hires.append(hires[-1])
                continue
            frames = video if tuple(video.shape[2:4]) == resolution else nets.resize_video(video, resolution)
            low, high = self._encode_video(frames)
            lowres.append(low)
            hires.append(high)
        return FeatureGrids(tuple(lowres), tuple(hires), tuple(resolutions))

    def _encode_video(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, H, W, 3] -> unit-norm (lowres [B, T, H/8, W/8, 256], hires [B, T, H/4, W/4, 128])."""
        b, t, h, w, c = video.shape
        frames = video.reshape(b * t, h, w, c).permute(0, 3, 1, 2)
        chunk = self.feature_extractor_chunk_size or b * t
        low_all = high_all = None
        for start in range(0, b * t, chunk):
            part = frames[start : start + chunk]
            if self.gradient_checkpointing and torch.is_grad_enabled():
                low, high = checkpoint(self._encode_frames, part, use_reentrant=False)
            else:
                low, high = self._encode_frames(part)
            if low_all is None:
                # Filled chunk by chunk (no concatenation copy); contiguous, so the correlation
                # gathers read them without copies.
                low_all = low.new_empty((b * t, *low.shape[1:]))
                high_all = high.new_empty((b * t, *high.shape[1:]))
            low_all[start : start + chunk] = low
            high_all[start : start + chunk] = high
        return low_all.view(b, t, *low_all.shape[1:]), high_all.view(b, t, *high_all.shape[1:])

    def _encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.resnet_torch(frames)
        low = outputs[3].permute(0, 2, 3, 1)
        high = outputs[1].permute(0, 2, 3, 1)
        if self.extra_convs is not None:
            low = self.extra_convs(low)
        return nets.l2_normalize(low), nets.l2_normalize(high)

    def get_query_features(
        self,
        video: torch.Tensor,
        is_training: bool,
        query_points: torch.Tensor,
        feature_grids: FeatureGrids | None = None,
        refinement_resolutions: Sequence[Sequence[int]] | None = None,
    ) -> QueryFeatures:
        """Sample the features at ``query_points`` [B, N, 3] (t, y, x in ``video`` pixels)."""
        if feature_grids is None:
            feature_grids = self.get_feature_grids(video, is_training, refinement_resolutions)
        video_thw = tuple(video.shape[1:4])
        lowres, hires = [], []
        for i in range(len(feature_grids.resolutions)):
            if i > 0 and feature_grids.resolutions[i] == feature_grids.resolutions[i - 1]:
                lowres.append(lowres[-1])
                hires.append(hires[-1])
                continue
            for grid, out in ((feature_grids.lowres[i], lowres), (feature_grids.hires[i], hires)):
                position = nets.convert_grid_coordinates(query_points, video_thw, tuple(grid.shape[1:4]))
                out.append(nets.sample_query_features(grid, position))
        return QueryFeatures(tuple(lowres), tuple(hires), feature_grids.resolutions)

    def estimate_trajectories(
        self,
        video_size: Sequence[int],
        is_training: bool,
        feature_grids: FeatureGrids,
        query_features: QueryFeatures,
        query_points_in_video: torch.Tensor | None,
        query_chunk_size: int | None = None,
        causal_context: list[dict[str, torch.Tensor]] | None = None,
        get_causal_context: bool = False,
        frame_chunk_size: int | None = None,
    ) -> dict[str, Any]:
        """Initial estimates from the cost volume, then ``num_pips_iter`` refinements per resolution.

        Args:
          video_size: (height, width) of the video that outputs are expressed in.
          query_points_in_video: [B, N, 3] (t, y, x); when given, the initial estimate on each
            query's own frame is the query point itself.
          causal_context: for causal models, per-refinement-iteration dicts of mixer history
            (see ``construct_initial_causal_state``); None starts from the first frame.
          get_causal_context: also return ``causal_context`` for the frames that follow.

        Returns lists over iterates (initial, then each refinement) of ``tracks`` [B, N, T, 2],
        ``occlusion`` and ``expected_dist`` [B, N, T].
        """
        if causal_context is not None and is_training:
            raise ValueError("training with causal_context is not supported")
        if (causal_context is not None or get_causal_context) and not self.use_casual_conv:
            raise ValueError("causal context needs a model built with use_casual_conv=True")
        video_size = (int(video_size[0]), int(video_size[1]))
        num_levels = len(feature_grids.lowres) - 1
        num_iters = self.num_pips_iter * num_levels
        if causal_context is not None and len(causal_context) != num_iters:
            raise ValueError(f"causal_context has {len(causal_context)} entries, expected {num_iters}")
        num_queries = query_features.lowres[0].shape[1]
        num_frames = feature_grids.lowres[0].shape[1]
        chunk_size = query_chunk_size or (32 if is_training else 64)
        initial_hw = self.initial_resolution
        pyramids = [self._pyramid(feature_grids, level) for level in range(1, num_levels + 1)]

        perm = None
        if is_training:
            perm = torch.randperm(num_queries, device=query_features.lowres[0].device)
        iterates: dict[str, list[list[torch.Tensor]]] = {
            key: [[] for _ in range(num_iters + 1)] for key in ("tracks", "occlusion", "expected_dist")
        }
        new_context: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(num_iters)]

        def to_video(points: torch.Tensor) -> torch.Tensor:
            return nets.convert_grid_coordinates(points, initial_hw[::-1], video_size[::-1])

        def record(i: int, points: torch.Tensor, occlusion: torch.Tensor, expected_dist: torch.Tensor) -> None:
            iterates["tracks"][i].append(to_video(points))
            iterates["occlusion"][i].append(occlusion)
            iterates["expected_dist"][i].append(expected_dist)

        for start in range(0, num_queries, chunk_size):
            idx = perm[start : start + chunk_size] if perm is not None else slice(start, start + chunk_size)
            chunk_queries = None
            if query_points_in_video is not None:
                chunk_queries = nets.convert_grid_coordinates(
                    query_points_in_video[:, idx], (num_frames, *video_size), (num_frames, *initial_hw)
                )
            points, occlusion, expected_dist = self.tracks_from_cost_volume(
                query_features.lowres[0][:, idx], feature_grids.lowres[0], chunk_queries, frame_chunk_size
            )
            record(0, points, occlusion, expected_dist)
            initial_occlusion, initial_expected_dist = occlusion, expected_dist
            # JAX stop-gradients the refinement of every chunk but the first one.
            grad_mode = torch.no_grad() if is_training and start > 0 else contextlib.nullcontext()
            with grad_mode:
                mixer_feats = None
                for i in range(num_iters):
                    level = i // self.num_pips_iter + 1
                    queries = [query_features.hires[level][:, idx], query_features.lowres[level][:, idx]]
                    queries += queries[-1:] * self.pyramid_level
                    context = None
                    if causal_context is not None:
                        context = {k: v[:, idx] for k, v in causal_context[i].items()}
                    points, occlusion, expected_dist, mixer_feats, chunk_context = self.refine_pips(
                        queries,
                        pyramids[level - 1],
                        points,
                        occlusion,
                        expected_dist,
                        orig_hw=initial_hw,
                        last_iter=mixer_feats,
                        resize_hw=feature_grids.resolutions[level],
                        causal_context=context,
                        get_causal_context=get_causal_context,
                    )
                    record(i + 1, points, occlusion, expected_dist)
                    new_context[i].append(chunk_context)
                    if (i + 1) % self.num_pips_iter == 0:
                        mixer_feats = None
                        occlusion, expected_dist = initial_occlusion, initial_expected_dist

        inv_perm = torch.argsort(perm) if perm is not None else None

        def gather(parts: list[torch.Tensor]) -> torch.Tensor:
            joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            return joined if inv_perm is None else joined[:, inv_perm]

        out: dict[str, Any] = {key: [gather(parts) for parts in lists] for key, lists in iterates.items()}
        if get_causal_context:
            out["causal_context"] = [
                {key: gather([c[key] for c in chunks]) for key in chunks[0]} for chunks in new_context
            ]
        return out

    def _pyramid(self, feature_grids: FeatureGrids, level: int) -> list[torch.Tensor]:
        """Correlation grids of a refinement level: hires, lowres, then pooled lowres."""
        pyramid = [feature_grids.hires[level], feature_grids.lowres[level]]
        for _ in range(self.pyramid_level):
            grid = pyramid[-1]
            b, t = grid.shape[:2]
            pooled = F.avg_pool2d(grid.flatten(0, 1).permute(0, 3, 1, 2), kernel_size=2, stride=2)
            pyramid.append(pooled.permute(0, 2, 3, 1).reshape(b, t, *pooled.shape[2:], grid.shape[-1]))
        return pyramid

    def tracks_from_cost_volume(
        self,
        interp_feature: torch.Tensor,
        feature_grid: torch.Tensor,
        query_points: torch.Tensor | None,
        frame_chunk_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Initial tracks from the cost volume of query features against every frame.

        Args:
          interp_feature: query features [B, N, C].
          feature_grid: [B, T, h, w, C].
          query_points: optional [B, N, 3] (t, y, x) in ``initial_resolution`` pixels; on its own
            frame a query's estimate is the query point.
          frame_chunk_size: frames per step (default: keeps each step around 2**22 cells).

        Returns points [B, N, T, 2] (x, y) in ``initial_resolution`` pixels, occlusion and
        expected-distance logits [B, N, T].
        """
        b, t, h, w, _ = feature_grid.shape
        n = interp_feature.shape[1]
        if frame_chunk_size is None:
            frame_chunk_size = max(1, COST_VOLUME_CELLS // max(1, b * n * h * w))
        results = []
        for start in range(0, t, frame_chunk_size):
            results.append(
                self._cost_volume_head(
                    interp_feature, feature_grid[:, start : start + frame_chunk_size], query_points, start
                )
            )
        if len(results) == 1:
            return results[0]
        return tuple(torch.cat(parts, dim=2) for parts in zip(*results))

    def _cost_volume_head(
        self,
        interp_feature: torch.Tensor,
        feature_grid: torch.Tensor,
        query_points: torch.Tensor | None,
        first_frame: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mods = self.torch_cost_volume_track_mods
        cost_volume = torch.einsum("bnc,bthwc->tbnhw", interp_feature, feature_grid)
        t, b, n, h, w = cost_volume.shape
        cost_volume = cost_volume.reshape(t * b * n, h, w, 1).permute(0, 3, 1, 2)
        hidden = F.relu(mods["hid1"](cost_volume))

        logits = mods["hid2"](hidden).permute(0, 2, 3, 1).reshape(t, b, n, h * w).permute(1, 2, 0, 3)
        heatmaps = F.softmax(logits * self.softmax_temperature, dim=-1).view(b, n, t, h, w)
        points = nets.soft_argmax_heatmap(heatmaps, SOFT_ARGMAX_THRESHOLD)
        init_h, init_w = self.initial_resolution
        points = nets.convert_grid_coordinates(points, (w, h), (init_w, init_h))
        if query_points is not None:
            frames = torch.arange(first_frame, first_frame + t, device=points.device)
            is_query = (torch.round(query_points[..., 0:1]) == frames)[..., None]
            points = torch.where(is_query, torch.flip(query_points[:, :, None, 1:3], dims=(-1,)), points)

        hidden = F.relu(mods["hid3"](F.pad(hidden, (0, 2, 0, 2))))
        hidden = F.relu(mods["hid4"](torch.mean(hidden, dim=(-1, -2))))
        logits = mods["occ_out"](hidden).view(t, b, n, 2).permute(1, 2, 0, 3)
        return points, logits[..., 0], logits[..., 1]

    def refine_pips(
        self,
        target_feature: Sequence[torch.Tensor],
        pyramid: Sequence[torch.Tensor],
        pos_guess: torch.Tensor,
        occ_guess: torch.Tensor,
        expd_guess: torch.Tensor,
        orig_hw: Sequence[int],
        last_iter: torch.Tensor | None = None,
        resize_hw: Sequence[int] | None = None,
        causal_context: dict[str, torch.Tensor] | None = None,
        get_causal_context: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One mixer refinement of tracks ``pos_guess`` [B, N, T, 2] (``orig_hw`` pixels).

        ``target_feature``: query features per pyramid level; ``last_iter`` the mixer features of
        the previous iteration at this resolution (None on the first); ``resize_hw`` the
        resolution the pyramid was computed at.
        """
        orig_h, orig_w = orig_hw
        resized_h, resized_w = resize_hw if resize_hw is not None else orig_hw
        radius = self.patch_size // 2
        corrs = []
        for level, (query, grid) in enumerate(zip(target_feature, pyramid)):
            grid_h, grid_w = grid.shape[2:4]
            coords = nets.convert_grid_coordinates(pos_guess, (orig_w, orig_h), (grid_w, grid_h))
            if last_iter is not None:
                query = last_iter[..., :HIGHRES_DIM] if level == 0 else last_iter[..., HIGHRES_DIM:]
            corrs.append(nets.patch_correlation(grid, coords, query, radius))

        b, n, t = pos_guess.shape[:3]
        if last_iter is None:
            features = torch.cat([target_feature[0], target_feature[1]], dim=-1)[:, :, None].expand(b, n, t, -1)
        else:
            features = last_iter
        mlp_input = torch.cat(
            [torch.zeros_like(pos_guess), occ_guess[..., None], expd_guess[..., None], features, *corrs], dim=-1
        )
        if causal_context is not None:
            causal_context = {k: v.reshape(b * n, *v.shape[2:]) for k, v in causal_context.items()}
        res, new_context = self.torch_pips_mixer(mlp_input.reshape(b * n, t, -1), causal_context, get_causal_context)
        res = res.view(b, n, t, -1)
        new_context = {k: v.reshape(b, n, *v.shape[1:]) for k, v in new_context.items()}
        pos_update = nets.convert_grid_coordinates(res[..., :2], (resized_w, resized_h), (orig_w, orig_h))
        return (
            pos_update + pos_guess,
            res[..., 2] + occ_guess,
            res[..., 3] + expd_guess,
            res[..., 4:] + features,
            new_context,
        )

    def construct_initial_causal_state(
        self, num_points: int, num_resolutions: int = 1, batch_size: int = 1
    ) -> list[dict[str, torch.Tensor]]:
        """Zero mixer history (the start of a video) for every refinement iteration."""
        device = self.torch_pips_mixer.linear.weight.device
        k, c = self.mixer_kernel_shape - 1, self.mixer_hidden_dim
        return [
            {
                name: torch.zeros(batch_size, num_points, k, channels, device=device)
                for i in range(self.num_mixer_blocks)
                for name, channels in ((f"block_{i}_causal_1", c), (f"block_{i}_causal_2", 4 * c))
            }
            for _ in range(num_resolutions * self.num_pips_iter)
        ]


def _check_inputs(video: torch.Tensor, query_points: torch.Tensor) -> None:
    if video.dim() != 5 or video.shape[-1] != 3:
        raise TapforgeError(
            f"video must be [batch, frames, height, width, 3], got shape {tuple(video.shape)}; "
            "fix: add the batch axis and pass RGB frames scaled to [-1, 1]"
        )
    if not video.is_floating_point():
        raise TapforgeError(f"video must be floating point in [-1, 1], got {video.dtype}; fix: frames / 255 * 2 - 1")
    if query_points.dim() != 3 or query_points.shape[-1] != 3 or query_points.shape[0] != video.shape[0]:
        raise TapforgeError(
            f"query_points must be [batch, num_queries, 3] (t, y, x) matching the video batch "
            f"{video.shape[0]}, got shape {tuple(query_points.shape)}; fix: stack queries as (t, y, x) rows"
        )
    if query_points.shape[1] == 0:
        raise TapforgeError("query_points holds no queries; fix: pass at least one (t, y, x) point to track")
