"""`tapforge synth export DIR --to FORMAT --out OUT`: a rendered dataset in another trainer's on-disk layout.

One module per format (`cotracker`, `pointodyssey`, `tapvid3d`), each with ``write(clip, out)``, ``done(out, key)``,
``DROPS`` (what the format cannot hold) and ``DEPTH`` (``required``, ``optional`` or ``none``: whether it holds
depth maps); its docstring is the format's conventions and becomes
the README written beside the export. A multi-view format (`mvtracker`) writes whole scenes instead:
``write_scene(clips, out)`` with the views of one scene (consecutive samples of a shard, in view order; a
single-view clip is a scene of one view), ``scene_folder(clip)`` and ``done(out, folder)``; the other formats
write each view as a clip of its own. Every file is written atomically and each clip's last file marks it
complete, so a rerun keeps the clips a killed run finished and redoes the rest. numpy + PIL only.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Iterator

from tapforge.base.atomic import atomic_write_bytes, remove_stale_temporaries
from tapforge.base.errors import TapforgeError
from tapforge.synth.exports import cotracker, mvtracker, pointodyssey, tapvid3d
from tapforge.synth.schema import Clip
from tapforge.synth.shards import iter_dataset_clips

FORMATS: dict[str, ModuleType] = {
    "cotracker": cotracker,
    "pointodyssey": pointodyssey,
    "tapvid3d": tapvid3d,
    "mvtracker": mvtracker,
}
README = "README.md"


def readme(name: str) -> str:
    """The README written beside an export in format ``name``: its conventions and what it drops."""
    module = FORMATS[name]
    return (
        f"# tapforge export: {name}\n\n{inspect.getdoc(module)}\n\n"
        f"Dropped (the format cannot hold it): {module.DROPS}.\n"
    )


def export_dataset(dataset: Path, name: str, out: Path) -> dict:
    """Write every clip of ``dataset`` to ``out`` in format ``name``; return counts of clips (scenes, for a
    multi-view format) written and kept (exported completely by an earlier run) and the notes printed for the user."""
    if name not in FORMATS:
        raise TapforgeError(f"--to {name}: unknown format; use one of {', '.join(FORMATS)}")
    module = FORMATS[name]
    source, target = dataset.resolve(), out.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise TapforgeError(
            f"--out {out} overlaps the dataset {dataset} (an export there would mix its files into the dataset, or "
            "clean the dataset's temporaries); fix: export into a folder of its own, outside the dataset"
        )
    written = kept = without_depth = 0
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, *(p for p in out.glob("**/") if p != out)):  # what a killed export left half-written
        remove_stale_temporaries(folder / "*")
    atomic_write_bytes(out / README, readme(name).encode())
    scenes = hasattr(module, "write_scene")
    for clips in _scenes(dataset) if scenes else ([clip] for clip in iter_dataset_clips(dataset)):
        key = module.scene_folder(clips[0]) if scenes else clips[0].key
        if module.done(out, key):
            kept += 1
            continue
        for clip in clips:
            if clip.depth is None and module.DEPTH == "required":
                raise TapforgeError(
                    f"{dataset}: clip {clip.key} has no depth pass, which the {name} layout needs (its loaders read "
                    "a depth image per frame); render the dataset with --set 'outputs.passes=[depth,segmentation]'"
                )
            without_depth += clip.depth is None and module.DEPTH == "optional"
        if scenes:
            module.write_scene(clips, out)
        else:
            module.write(clips[0], out)
        written += 1
    notes = []
    if without_depth:
        notes.append(f"{without_depth} clips have no depth pass: exported without depth maps (the rest is complete)")
    return {"written": written, "kept": kept, "notes": notes}


def _scenes(dataset: Path) -> Iterator[list[Clip]]:
    """The dataset's clips grouped by scene: a multi-view scene's views (consecutive, in view order), checked
    complete; a single-view clip alone."""
    group: list[Clip] = []
    for clip in iter_dataset_clips(dataset):
        if group and _scene_of(clip) != _scene_of(group[0]):
            yield _complete(group, dataset)
            group = []
        group.append(clip)
    if group:
        yield _complete(group, dataset)


def _scene_of(clip: Clip) -> str:
    view = clip.meta.get("view")
    return view["scene"] if isinstance(view, dict) else clip.key


def _complete(group: list[Clip], dataset: Path) -> list[Clip]:
    """The views of one scene, refused in one line unless they are views 0 .. count - 1 in order."""
    view = group[0].meta.get("view")
    count = view["count"] if isinstance(view, dict) else 1
    indices = [c.meta["view"]["index"] if isinstance(view, dict) else 0 for c in group]
    if indices != list(range(count)):
        raise TapforgeError(
            f"{dataset}: scene {_scene_of(group[0])} holds views {indices} of {count} in shard order; a multi-view "
            "export needs every view, consecutive and in order, as `tapforge synth render` writes them"
        )
    return group
