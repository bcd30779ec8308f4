"""A tabletop: objects standing on a textured table top, and an arm of primitives that sweeps through them.

    tapforge synth render --config examples/scenes/tabletop_arm.yaml --out out/tabletop --num-scenes 8

The arm (a post, a long capsule and a ball at its end) moves by script: it swings about the post, low over the
table, and pushes the objects, which move by physics. The camera pans slowly. Keys (scene: section):
num_objects, sweep_speed, arm_length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tapforge.synth.scene import (
    Camera,
    Dome,
    Emission,
    Floor,
    Principled,
    Shape,
    Sun,
    Texture,
    about_z,
    quaternion_product,
)
from tapforge.synth.script_config import integer_range, number_range, option

SHAPES = ["cube", "cylinder", "sphere", "cone", "suzanne", "blob", "superquadric"]
PIVOT = np.array([-3.0, 0.0])  # where the arm's post stands


@dataclass
class Config:
    num_objects: int = option(6, integer_range(1, 20), "an integer in [1, 20]")
    sweep_speed: float = option(45.0, number_range(0, 360), "degrees a second the arm swings, in [0, 360]")
    arm_length: float = option(5.0, number_range(1, 8), "the arm's length in scene units, in [1, 8]")


def build(scene, rng, cfg: Config):
    T = scene.num_frames
    start = np.radians(rng.uniform(-50, -20))
    angle = start + np.radians(cfg.sweep_speed) * np.arange(T) / scene.frame_rate
    eye = np.array([PIVOT[0] + rng.uniform(1.5, 3.5), -7.0, 4.5])
    pan = np.linspace(0, 1, T)[:, None] * [1.5, 0, 0]
    scene.camera = Camera(focal_length=35).look_at(eye + pan, (PIVOT[0] + 2.5, 1.0, 0.3))
    scene.floor = Floor(material=Principled(texture=Texture.generated("dead_leaves", rng.integers(2**31), tile=16)))
    scene.background = Dome(Emission(strength=1.3, texture=Texture.generated("spectral", rng.integers(2**31), tile=40)))
    scene += Sun(direction=(-0.3, -0.4, 0.87), strength=3.0)
    arm_material = Principled(color=(0.75, 0.75, 0.78), roughness=0.25, metallic=1.0, label="metal")
    scene += Shape("cylinder", size=1.0, static=True, position=(*PIVOT, 0.5), material=arm_material, name="post")
    height, radius = 0.45, 0.3
    lying = (0.0, np.sin(np.pi / 4), 0.0, np.cos(np.pi / 4))  # the capsule's axis from z to x
    centre = PIVOT + (cfg.arm_length / 2) * np.stack([np.cos(angle), np.sin(angle)], -1)
    tip = PIVOT + cfg.arm_length * np.stack([np.cos(angle), np.sin(angle)], -1)
    arm = Shape(
        "capsule",
        params={"length": cfg.arm_length / radius - 2},
        size=cfg.arm_length,
        name="arm",
        material=arm_material,
    )
    scene += arm.set_poses(np.column_stack([centre, np.full(T, height)]), quaternion_product(about_z(angle), lying))
    ball = Shape("sphere", size=0.9, name="hand", material=Principled(color=(0.9, 0.3, 0.1), roughness=0.4))
    scene += ball.set_poses(np.column_stack([tip, np.full(T, height)]))
    for _ in range(cfg.num_objects):  # objects in the arm's reach, resting on the table
        shape = str(rng.choice(SHAPES))
        params = {
            "seed": int(rng.integers(2**31)),
            "e1": float(rng.uniform(0.3, 1.2)),
            "e2": float(rng.uniform(0.3, 1.2)),
        }
        texture = Texture.generated(str(rng.choice(["dead_leaves", "mosaic", "spectral"])), rng.integers(2**31), tile=1)
        obj = scene.add(
            Shape(
                shape,
                size=float(rng.uniform(0.8, 1.3)),
                params=params,
                material=Principled(texture=texture, roughness=float(rng.uniform(0.4, 0.9))),
            )
        )
        reach, bearing = rng.uniform(1.5, cfg.arm_length), rng.uniform(start + 0.2, max(angle[-1], start + 0.6))
        x, y = PIVOT + reach * np.array([np.cos(bearing), np.sin(bearing)])
        region = ((x - 0.3, y - 0.3, 0.6), (x + 0.3, y + 0.3, 0.9))
        scene.simulator.place_without_overlap(obj, region, rng)
    scene.simulator.run(30)  # the objects settle on the table before the clip starts
    for obj in scene.objects:
        obj.velocity = obj.angular_velocity = (0.0, 0.0, 0.0)
