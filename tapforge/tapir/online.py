"""Online (frame-by-frame) tracking with a causal TAPIR.

A causal model (``use_casual_conv=True``, e.g. the causal BootsTAPIR checkpoint) only looks at
past frames, so it can track a stream: each ``step`` sees one new frame and carries the mixer's
temporal history forward. The per-frame outputs equal those of the offline causal model run on
the whole video.

    tracker = OnlineTAPIR(model)
    tracker.add_queries(query_points, frames)        # query features from frames already seen
    for frame in stream:                             # frame [B, H, W, 3] in [-1, 1]
        out = tracker.step(frame)                    # tracks [B, N, 2], occlusion [B, N], ...
    # or start tracks on the current frame:  tracker.step(frame, new_queries=yx)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir.model import TAPIR, QueryFeatures


class OnlineTAPIR:
    """Causal TAPIR driven one frame at a time.

    Args:
      model: a TAPIR built with ``use_casual_conv=True``.
      query_chunk_size: queries processed together per step.
      refinement_resolutions: as in ``TAPIR.forward``; default derived from the first frame size.
    """

    def __init__(
        self,
        model: TAPIR,
        query_chunk_size: int = 64,
        refinement_resolutions: Sequence[Sequence[int]] | None = None,
    ):
        if not model.use_casual_conv:
            raise TapforgeError(
                "online tracking needs a causal TAPIR (use_casual_conv=True); fix: load a causal checkpoint "
                "such as causal BootsTAPIR, or track the whole video offline"
            )
        self.model = model
        self.query_chunk_size = query_chunk_size
        self.refinement_resolutions = refinement_resolutions
        self.reset()

    def reset(self) -> None:
        """Forget all queries and history; the next ``step`` is frame 0 of a new stream."""
        self.frame_index = 0
        self.video_size: tuple[int, int] | None = None
        self.query_features: QueryFeatures | None = None
        self.query_points: torch.Tensor | None = None
        self.causal_state: list[dict[str, torch.Tensor]] | None = None

    @property
    def num_queries(self) -> int:
        return 0 if self.query_points is None else self.query_points.shape[1]

    @torch.no_grad()
    def add_queries(self, query_points: torch.Tensor, frames: torch.Tensor) -> None:
        """Add queries whose features are read from ``frames``.

        Args:
          query_points: [B, M, 3] (t, y, x); t indexes ``frames`` and is also the stream frame
            on which the estimate is pinned to the query.
          frames: [B, T, H, W, 3] in [-1, 1], stream frames 0..T-1 (or any frames of the same
            size showing the points). The new tracks start with empty history: at the next
            ``step`` they behave as if the stream started there.
        """
        self._check_size(frames.shape[2:4])
        if query_points.dim() != 3 or query_points.shape[-1] != 3 or query_points.shape[0] != frames.shape[0]:
            raise TapforgeError(
                f"query_points must be [batch, M, 3] (t, y, x) matching frames batch {frames.shape[0]}, "
                f"got {tuple(query_points.shape)}; fix: stack queries as (t, y, x) rows"
            )
        query_points = query_points.float()
        grids = self.model.get_feature_grids(frames, False, self.refinement_resolutions)
        features = self.model.get_query_features(frames, False, query_points, grids)
        self._append(query_points, features)

    @torch.no_grad()
    def step(self, frame: torch.Tensor, new_queries: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Track all queries into the next frame.

        Args:
          frame: [B, H, W, 3] in [-1, 1].
          new_queries: optional [B, M, 2] (y, x) points on this frame to start tracking here.

        Returns ``tracks`` [B, N, 2] (x, y) pixels, ``occlusion`` and ``expected_dist`` logits
        [B, N] for this frame, N counting every query added so far (in order of addition).
        """
        if frame.dim() != 4 or frame.shape[-1] != 3:
            raise TapforgeError(
                f"frame must be [batch, height, width, 3], got {tuple(frame.shape)}; fix: add the batch axis"
            )
        self._check_size(frame.shape[1:3])
        video = frame[:, None]
        grids = self.model.get_feature_grids(video, False, self.refinement_resolutions)
        if new_queries is not None:
            times = torch.zeros_like(new_queries[..., :1], dtype=torch.float32)
            local = torch.cat([times, new_queries.float()], dim=-1)
            features = self.model.get_query_features(video, False, local, grids)
            self._append(local + torch.tensor([self.frame_index, 0.0, 0.0], device=local.device), features)
        if self.query_points is None:
            raise TapforgeError("no query points to track; fix: call add_queries() or pass new_queries to step()")

        # Pin each query on its own frame: relative time 0 in this one-frame "video".
        pinned = torch.cat([torch.round(self.query_points[..., :1]) - self.frame_index, self.query_points[..., 1:]], -1)
        trajectories = self.model.estimate_trajectories(
            self.video_size,
            False,
            grids,
            self.query_features,
            pinned,
            self.query_chunk_size,
            causal_context=self.causal_state,
            get_causal_context=True,
        )
        self.causal_state = trajectories.pop("causal_context")
        self.frame_index += 1
        out = self.model.combine_iterates(trajectories)
        return {key: out[key][:, :, 0] for key in ("tracks", "occlusion", "expected_dist")}

    def _check_size(self, size: Sequence[int]) -> None:
        size = (int(size[0]), int(size[1]))
        if self.video_size is None:
            self.video_size = size
        elif size != self.video_size:
            raise TapforgeError(
                f"frame size {size} differs from the stream's {self.video_size}; fix: resize every frame to "
                f"{self.video_size} or call reset() for a new stream"
            )

    def _append(self, query_points: torch.Tensor, features: QueryFeatures) -> None:
        batch, count = query_points.shape[:2]
        num_levels = len(features.resolutions) - 1
        state = self.model.construct_initial_causal_state(count, num_levels, batch_size=batch)
        if self.query_points is None:
            self.query_points, self.query_features, self.causal_state = query_points, features, state
            return
        if features.resolutions != self.query_features.resolutions:
            raise TapforgeError("new queries were computed at other resolutions; fix: use frames of the stream's size")
        self.query_points = torch.cat([self.query_points, query_points], dim=1)
        self.query_features = QueryFeatures(
            tuple(torch.cat(pair, dim=1) for pair in zip(self.query_features.lowres, features.lowres)),
            tuple(torch.cat(pair, dim=1) for pair in zip(self.query_features.hires, features.hires)),
            features.resolutions,
        )
        self.causal_state = [
            {key: torch.cat([old[key], new[key].to(old[key])], dim=1) for key in old}
            for old, new in zip(self.causal_state, state)
        ]
