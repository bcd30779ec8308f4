"""A turntable: a few objects standing on a slowly turning disc, lit by a lamp that circles them.

    tapforge synth render --config examples/scenes/turntable.yaml --out out/turntable --num-scenes 8

Everything moves by script (no physics): the disc and what stands on it turn together about the z axis, the camera
stays, the lamp orbits. Keys (scene: section): num_objects, turns, lamp_power, orbit_lamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tapforge.synth.scene import Camera, Dome, Emission, Floor, PointLight, Principled, Shape, Sun, Texture, about_z
from tapforge.synth.script_config import integer_range, number_range, option

SHAPES = ["sphere", "cube", "cone", "torus", "suzanne", "blob", "capsule"]


@dataclass
class Config:
    num_objects: int = option(3, integer_range(1, 6), "an integer in [1, 6]")
    turns: float = option(0.25, number_range(-4, 4), "turns of the disc over the clip, in [-4, 4]")
    lamp_power: float = option(800.0, number_range(0, 1e5), "watts, in [0, 100000]")
    orbit_lamp: bool = True


def build(scene, rng, cfg: Config):
    frames = np.arange(scene.num_frames)
    angle = 2 * np.pi * cfg.turns * frames / max(scene.num_frames - 1, 1)
    scene.camera = Camera(focal_length=35).look_at((0.0, -9.0, 4.5), (0.0, 0.0, 0.8))
    scene.floor = Floor(material=Principled(texture=Texture.generated("dead_leaves", rng.integers(2**31), tile=20)))
    scene.background = Dome(Emission(strength=1.2, texture=Texture.generated("mixture", rng.integers(2**31), tile=40)))
    scene += Sun(direction=(0.4, -0.3, 0.85), strength=1.5)
    disc = Shape(
        "cylinder",
        params={"height": 0.06},
        size=5.0,
        static=True,
        material=Principled(texture=Texture.generated("mosaic", rng.integers(2**31), tile=5, size=256)),
    )
    disc_height = 0.06 * 5.0
    scene += disc.set_poses(np.tile([0.0, 0.0, disc_height / 2], (scene.num_frames, 1)), about_z(angle))
    for k in range(cfg.num_objects):
        shape = str(rng.choice(SHAPES))
        texture = Texture.generated("dead_leaves", rng.integers(2**31), tile=1.2, size=256)
        obj = Shape(
            shape,
            size=float(rng.uniform(0.8, 1.4)),
            params={"seed": int(rng.integers(2**31))},
            material=Principled(texture=texture, roughness=float(rng.uniform(0.3, 0.8))),
        )
        radius, phase = rng.uniform(0.6, 1.8), 2 * np.pi * k / cfg.num_objects + rng.uniform(-0.3, 0.3)
        scene += obj  # added first: the scene reads the meshes that Blender makes (suzanne)
        lift = disc_height - obj.mesh()[0][:, 2].min()  # its lowest point rests on the disc
        spin = about_z(angle + rng.uniform(0, 2 * np.pi))
        positions = np.stack(
            [radius * np.cos(angle + phase), radius * np.sin(angle + phase), np.full(scene.num_frames, lift)], -1
        )
        obj.set_poses(positions, spin)
    orbit = np.linspace(0, np.pi, scene.num_frames) if cfg.orbit_lamp else np.zeros(scene.num_frames)
    scene += PointLight(
        power=cfg.lamp_power,
        radius=0.3,
        path=np.stack([4 * np.cos(orbit), 4 * np.sin(orbit) - 2, np.full(scene.num_frames, 4.0)], -1),
    )
