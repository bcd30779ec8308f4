"""Self-supervised fine-tuning on unlabeled real clips: the BootsTAP recipe (Doersch et al., arXiv 2402.00847).

A teacher, the exponential moving average of the student's weights (starting from the weights the fine-tune
starts from), tracks random query points through the clean clip without gradients. The student sees the clip
through a random spatial transform, consistent with the clip's frames (the sim2real crop window, which may drift
and zoom over the clip, and flips), with occluder patches and corruptions (colour, blur, noise, JPEG): the
training augmentation of ``tapforge.train.augment``. Its queries are points of the teacher's own trajectories at another
frame where the teacher sees them (the paper's query-invariance: a track must not depend on which of its points
is queried), mapped through the transform, and its targets are the teacher's tracks and occlusion mapped the same
way. The loss is the model's supervised one (TAPIR's and TAP-Net's ``tapforge.tapir.losses.tapir_loss``: Huber on
positions, occlusion and expected-distance cross-entropy, over every iterate; TAPNext's
``tapforge.tapir.tapnext_losses.tapnext_loss``, on the frames from the query on, as BootsTAPNext), counted only where
the pseudo-label is trustworthy:

- the teacher is confident: its visibility probability (occlusion and expected-distance heads, as at inference)
  is at least ``confidence`` (a visible label) or at most ``1 - confidence`` (an occluded one);
- the point stays inside the student's frame;
- the trajectory is consistent: the teacher, re-queried from the student's query frame on its own trajectory,
  agrees (both visible within ``consistency_px`` at 256x256 scale, or both occluded) in that frame.

From the paper: the EMA teacher, the transform-equivariance and query-invariance targets, the same loss terms as
supervised training, and training on synthetic and real batches together. The numbers (EMA decay, the confidence
and consistency thresholds, queries per clip, the self-supervised weight) are ours, chosen for small CPU
fine-tunes and stated in ``SelfSupervisedConfig``; the paper's large-scale values may differ.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import torch

from tapforge.base.errors import TapforgeError
from tapforge.tapir.checkpoint import tracking_outputs, visibility_uncertainty
from tapforge.tapir.losses import to_loss_scale
from tapforge.tapir.model import postprocess
from tapforge.train.augment import Sim2RealAugment
from tapforge.train.augment_config import AugmentConfig
from tapforge.train.batches import ClipBatch, RealClipBatch, TrainBatch
from tapforge.train.queries import query_points
from tapforge.train.sampling import outside_frame


@dataclass(frozen=True)
class SelfSupervisedConfig:
    """The self-supervised (BootsTAP) term, used when the data module has ``real_videos``.

    weight: the self-supervised loss's weight beside the supervised loss (1: equal).
    ema_decay: teacher <- decay * teacher + (1 - decay) * student after every training batch.
    num_queries: teacher query points per clip (random frames and pixels).
    confidence: a pseudo-label counts where the teacher's visibility probability is >= this or <= 1 - this.
    consistency_filter: drop pseudo-labels where the re-queried teacher disagrees (off: only confidence and frame).
    consistency_px: agreement distance at 256x256 scale.
    student_augment: the student's transform and corruptions (the sim2real augmentation's settings).
    """

    weight: float = 1.0
    ema_decay: float = 0.99
    num_queries: int = 128
    confidence: float = 0.8
    consistency_filter: bool = True
    consistency_px: float = 8.0
    student_augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        checks = [
            (
                self.weight >= 0,
                f"model.self_supervised.weight is {self.weight}; fix: use 0 or more (1: as the supervised loss)",
            ),
            (
                0 <= self.ema_decay < 1,
                f"model.self_supervised.ema_decay is {self.ema_decay}; fix: use a value in [0, 1), e.g. 0.99",
            ),
            (
                self.num_queries > 0,
                f"model.self_supervised.num_queries is {self.num_queries}; fix: use a positive count",
            ),
            (
                0.5 <= self.confidence < 1,
                f"model.self_supervised.confidence is {self.confidence}; fix: use a value in [0.5, 1)",
            ),
            (
                self.consistency_px > 0,
                f"model.self_supervised.consistency_px is {self.consistency_px}; fix: use a positive distance",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TapforgeError(message)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student for parameters; buffers (batch-norm statistics) copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.lerp_(s.detach().to(t.dtype), 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def make_teacher(student: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of the student, in eval mode."""
    teacher = copy.deepcopy(student)
    teacher.eval().requires_grad_(False)
    return teacher


class TeacherTracks(NamedTuple):
    """The teacher's prediction: tracks [B,N,T,2] (x, y), visibility probability [B,N,T], occluded [B,N,T]."""

    tracks: torch.Tensor
    visibility: torch.Tensor
    occluded: torch.Tensor


@torch.no_grad()
def run_teacher(teacher: torch.nn.Module, video: torch.Tensor, queries: torch.Tensor, chunk: int = 64) -> TeacherTracks:
    """Track ``queries`` [B,N,3] (t, y, x) through ``video`` [B,T,H,W,3] in [-1, 1] with the teacher, as tracking
    does (a TAPNext tracks the frames before a query's frame on the reversed video)."""
    out = tracking_outputs(teacher, video, queries, chunk)
    visibility, occluded = postprocess(out["occlusion"].float(), visibility_uncertainty(teacher, out))
    return TeacherTracks(out["tracks"].float(), visibility, occluded)


def random_queries(batch: int, num: int, frames: int, height: int, width: int, gen, device) -> torch.Tensor:
    """(t, y, x) queries [B,N,3] at pixel centres of uniformly random frames and pixels."""
    t = torch.randint(0, frames, (batch, num), generator=gen, device=device)
    y = torch.randint(0, height, (batch, num), generator=gen, device=device) + 0.5
    x = torch.randint(0, width, (batch, num), generator=gen, device=device) + 0.5
    return torch.stack([t.float(), y, x], dim=-1)


def requery_frames(visible: torch.Tensor, first: torch.Tensor, gen) -> torch.Tensor:
    """A random frame [B,N] where each track is visible, other than ``first`` [B,N] where the track allows it."""
    weights = visible.float()
    others = weights.scatter(-1, first[..., None], 0.0)
    weights = torch.where(others.sum(-1, keepdim=True) > 0, others, weights)
    weights = torch.where(weights.sum(-1, keepdim=True) > 0, weights, torch.ones_like(weights))  # nothing visible
    batch, num, frames = weights.shape
    return torch.multinomial(weights.reshape(-1, frames), 1, generator=gen).reshape(batch, num)


def confidence_mask(visibility: torch.Tensor, confidence: float) -> torch.Tensor:
    """True [B,N,T] where the teacher is sure either way: visibility >= confidence or <= 1 - confidence."""
    return (visibility >= confidence) | (visibility <= 1.0 - confidence)


def consistency_mask(a: TeacherTracks, b: TeacherTracks, max_px: float, image_size: tuple[int, int]) -> torch.Tensor:
    """True [B,N,T] where two teacher predictions of the same points agree: both occluded, or both visible within
    ``max_px`` at 256x256 scale."""
    close = to_loss_scale(a.tracks - b.tracks, image_size).norm(dim=-1) <= max_px
    return (a.occluded & b.occluded) | (~a.occluded & ~b.occluded & close)


class PseudoLabels(NamedTuple):
    """The student's batch (targets = the teacher's mapped tracks) and where the loss counts."""

    batch: TrainBatch
    mask: torch.Tensor  # [B,N,T] bool
    confident: torch.Tensor  # [B,N,T] bool, before the frame and consistency tests, in the student's rows
    consistent: torch.Tensor  # [B,N,T] bool, ditto (all True with the filter off)


@torch.no_grad()
def pseudo_labels(
    teacher: torch.nn.Module,
    clips: RealClipBatch,
    config: SelfSupervisedConfig,
    augment: Sim2RealAugment,
    gen,
    chunk: int = 64,
) -> PseudoLabels:
    """Teacher tracks on the clean clips -> the student's transformed batch and the mask of trustworthy labels."""
    video = clips.video
    batch, frames, height, width, _ = video.shape
    if (height, width) != augment.resolution:
        raise TapforgeError(
            f"real clips are {width}x{height} but the student sees {augment.resolution[1]}x"
            f"{augment.resolution[0]}; fix: make data.resolution the model's resolution"
        )
    clean = video.float() / 127.5 - 1.0
    queries = random_queries(batch, config.num_queries, frames, height, width, gen, video.device)
    first = run_teacher(teacher, clean, queries, chunk)
    requery = requery_frames(~first.occluded, queries[..., 0].long(), gen)
    confident = confidence_mask(first.visibility, config.confidence)
    if config.consistency_filter:
        second = run_teacher(teacher, clean, query_points(first.tracks, requery), chunk)
        consistent = consistency_mask(first, second, config.consistency_px, (height, width))
    else:
        consistent = torch.ones_like(confident)
    raw = ClipBatch(
        video=video,
        tracks=first.tracks,
        occluded=first.occluded,
        query_frame=requery,
        object_ids=torch.zeros(batch, config.num_queries, dtype=torch.long, device=video.device),
        keys=clips.keys,
    )
    student = augment(raw, gen)
    rows = student.source_index[..., None].expand(-1, -1, frames)
    confident, consistent = confident.gather(1, rows), consistent.gather(1, rows)
    inside = ~outside_frame(student.tracks, *augment.resolution)
    mask = confident & consistent & inside & ~student.no_visible_track[:, None, None]
    return PseudoLabels(student, mask, confident, consistent)


class ModelLoss(Protocol):
    """A model's supervised loss of its outputs against a batch's targets: (scalar, logged parts)."""

    def __call__(
        self, outputs: dict, batch: TrainBatch, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def self_supervised_loss(
    student: torch.nn.Module, outputs: dict, labels: PseudoLabels, model_loss: ModelLoss
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The student's supervised loss (``model_loss``) against the pseudo-labels where they count, and what to log
    about them."""
    batch, mask = labels.batch, labels.mask
    image_size = tuple(batch.video.shape[2:4])
    loss, parts = model_loss(outputs, batch, mask.float())
    with torch.no_grad():
        error = to_loss_scale(outputs["tracks"].float() - batch.tracks, image_size).norm(dim=-1)
        _, student_occluded = postprocess(outputs["occlusion"].float(), visibility_uncertainty(student, outputs))
        visible = mask & ~batch.occluded
        stats = {
            "kept_share": mask.float().mean(),
            "confident_share": labels.confident.float().mean(),
            "consistent_share": labels.consistent.float().mean(),
            "position_agreement": (visible & (error < 4.0)).sum() / visible.sum().clamp(min=1),
            "occlusion_agreement": (mask & (student_occluded == batch.occluded)).sum() / mask.sum().clamp(min=1),
        }
    return loss, {**parts, **stats}
