"""Deforming surfaces: a sheet of cloth falls over a block and drapes onto the floor, beside a capsule that
twists and bends; a ball rolls past in front of both, and a soft ball drops and squashes on the floor.

    tapforge synth render --config examples/scenes/cloth_drape.yaml --out out/cloth_drape --num-scenes 8

The cloth and the soft ball are Blender's simulations (colliding with the floor and the block); the capsule has
two procedural deformations (`Deform`), stacked in order. Tracks follow every surface exactly. Keys (scene:
section): cloth_size, pin (an edge of the sheet held in place, or none), twist, bend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tapforge.synth.scene import Camera, Cloth, Deform, Dome, Emission, Floor, Principled, Shape, SoftBody, Sun, Texture
from tapforge.synth.script_config import number_range, option


@dataclass
class Config:
    cloth_size: float = option(2.2, number_range(0.5, 6), "the sheet's side in metres, in [0.5, 6]")
    pin: Literal["none", "-x", "+x", "-y", "+y"] = "none"
    twist: float = option(1.2, number_range(-6, 6), "peak twist of the capsule in radians, in [-6, 6]")
    bend: float = option(0.6, number_range(-3, 3), "peak bend of the capsule in radians, in [-3, 3]")


def build(scene, rng, cfg: Config):
    scene.camera = Camera(focal_length=35).look_at((0.0, -7.0, 4.0), (0.0, 0.0, 0.8))
    scene.floor = Floor(material=Principled(texture=Texture.generated("dead_leaves", rng.integers(2**31), tile=20)))
    scene.background = Dome(Emission(strength=1.2, texture=Texture.generated("mixture", rng.integers(2**31), tile=40)))
    scene += Sun(direction=(0.4, -0.3, 0.85), strength=2.0)
    scene += Shape(
        "cube",
        size=1.0,
        static=True,
        position=(-1.0, 0.0, 0.5),
        material=Principled(texture=Texture.generated("mosaic", rng.integers(2**31), tile=1, size=256)),
    )
    sheet = Principled(texture=Texture.generated("dead_leaves", rng.integers(2**31), tile=0.7, size=256))
    scene += Cloth(
        size=cfg.cloth_size,
        resolution=24,
        position=(-1.0, 0.0, 1.6),
        pin=None if cfg.pin == "none" else cfg.pin,
        material=sheet,
    )
    texture = Texture.generated("spectral", rng.integers(2**31), tile=0.4, size=256)
    scene += Shape(
        "sphere",
        size=0.8,
        position=(3.0, -1.6, 0.4),
        velocity=(-3.0, 0.0, 0.0),
        friction=0.8,
        material=Principled(texture=texture),
    )
    twist_and_bend = (
        Deform("twist", amount=cfg.twist, period=16),
        Deform("bend", amount=cfg.bend, axis="X", period=24),
    )
    texture = Texture.generated("dead_leaves", rng.integers(2**31), tile=0.5, size=256)
    scene += Shape(
        "capsule",
        size=1.6,
        static=True,
        position=(1.3, 0.0, 0.8),
        deform=twist_and_bend,
        material=Principled(texture=texture),
    )
    texture = Texture.generated("mosaic", rng.integers(2**31), tile=0.4, size=256)
    scene += SoftBody(
        "icosphere",
        params={"subdivisions": 3},
        size=1.0,
        position=(0.3, -1.4, 1.6),
        material=Principled(texture=texture),
    )
