"""`tapforge synth export DIR --to FORMAT --out OUT`: a rendered dataset in another trainer's on-disk layout.

One module per format (`cotracker`, `pointodyssey`, `tapvid3d`), each with ``write(clip, out)``, ``done(out, key)``,
``DROPS`` (what the format cannot hold) and ``DEPTH`` (``required``, ``optional`` or ``none``: whether it holds
depth maps); its docstring is the format's conventions and becomes
the README written beside the export. Every file is written atomically and each clip's last file marks it
complete, so a rerun keeps the clips a killed run finished and redoes the rest. numpy + PIL only.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

from tapforge.base.atomic import atomic_write_bytes, remove_stale_temporaries
from tapforge.base.errors import TapforgeError
from tapforge.synth.exports import cotracker, pointodyssey, tapvid3d
from tapforge.synth.shards import iter_dataset_clips

FORMATS: dict[str, ModuleType] = {"cotracker": cotracker, "pointodyssey": pointodyssey, "tapvid3d": tapvid3d}
README = "README.md"


def readme(name: str) -> str:
    """The README written beside an export in format ``name``: its conventions and what it drops."""
    module = FORMATS[name]
    return (
        f"# tapforge export: {name}\n\n{inspect.getdoc(module)}\n\n"
        f"Dropped (the format cannot hold it): {module.DROPS}.\n"
    )


def export_dataset(dataset: Path, name: str, out: Path) -> dict:
    """Write every clip of ``dataset`` to ``out`` in format ``name``; return counts of clips written and kept
    (exported completely by an earlier run) and the notes printed for the user."""
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
    for clip in iter_dataset_clips(dataset):
        if module.done(out, clip.key):
            kept += 1
            continue
        if clip.depth is None and module.DEPTH == "required":
            raise TapforgeError(
                f"{dataset}: clip {clip.key} has no depth pass, which the {name} layout needs (its loaders read a "
                "depth image per frame); render the dataset with --set 'outputs.passes=[depth,segmentation]'"
            )
        without_depth += clip.depth is None and module.DEPTH == "optional"
        module.write(clip, out)
        written += 1
    notes = []
    if without_depth:
        notes.append(f"{without_depth} clips have no depth pass: exported without depth maps (the rest is complete)")
    return {"written": written, "kept": kept, "notes": notes}
