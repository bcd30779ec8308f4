"""PyBullet simulation of a scene: non-overlapping placement, settling of static objects, tossing of
dynamic ones (Kubric's MOVi rules), and the exact per-frame object poses."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.recipe import DYNAMIC_SPAWN_REGION, STATIC_SPAWN_REGION, VELOCITY_RANGE, ObjectSpec, SceneSpec

SETTLE_FRAMES = 100
MAX_PLACEMENT_TRIES = 100
DENSITY = 1.0


@dataclass
class Trajectories:
    """Per-object rigid poses at every frame, in world coordinates."""

    positions: np.ndarray  # [O,T,3]
    quaternions: np.ndarray  # [O,T,4] (x, y, z, w)

    def matrices(self) -> np.ndarray:
        """Object-to-world 4x4 matrices [O,T,4,4]."""
        return pose_matrices(self.positions, self.quaternions)


def quaternion_matrices(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] from unit quaternions [...,4] in (x, y, z, w) order."""
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def pose_matrices(positions: np.ndarray, quaternions: np.ndarray) -> np.ndarray:
    mats = np.zeros(positions.shape[:-1] + (4, 4))
    mats[..., :3, :3] = quaternion_matrices(quaternions)
    mats[..., :3, 3] = positions
    mats[..., 3, 3] = 1.0
    return mats


def _random_quaternion(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def _torus_pieces(vertices: np.ndarray, faces: np.ndarray, pieces: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """A torus (axis z) cut into sectors of whole faces: each sector is nearly convex."""
    centre = vertices[faces].mean(1)
    sector = ((np.arctan2(centre[:, 1], centre[:, 0]) + np.pi) / (2 * np.pi) * pieces).astype(int) % pieces
    return [(vertices, faces[sector == k]) for k in range(pieces)]


def _write_obj_parts(parts: list[tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Write mesh parts as separate OBJ objects; PyBullet makes one convex hull per object (a compound)."""
    lines, offset = [], 1
    for k, (vertices, faces) in enumerate(parts):
        used = np.unique(faces)
        remap = np.zeros(len(vertices), int)
        remap[used] = np.arange(len(used)) + offset
        lines.append(f"o part{k}")
        lines += [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in vertices[used]]
        lines += [f"f {a} {b} {c}" for a, b, c in remap[faces]]
        offset += len(used)
    path.write_text("\n".join(lines) + "\n")


def _collision_shape(client: int, obj: ObjectSpec, vertices: np.ndarray, faces: np.ndarray, scratch: Path) -> int:
    import pybullet as pb

    shape = obj.shape
    if shape == "asset":  # arbitrary meshes: a cached VHACD decomposition of the unit mesh, scaled and shifted
        from synth.assets import convex_decomposition
        from synth.meshes import unit_mesh

        unit_vertices, unit_faces = unit_mesh(obj)
        offset = vertices[0] - unit_vertices[0] * obj.size
        return pb.createCollisionShape(pb.GEOM_MESH, fileName=str(convex_decomposition(unit_vertices, unit_faces)),
                                       meshScale=[obj.size] * 3, collisionFramePosition=offset.tolist(),
                                       physicsClientId=client)
    if shape == "torus":  # non-convex: a compound of convex sectors instead of one hull
        path = scratch / f"torus_{len(list(scratch.iterdir()))}.obj"
        _write_obj_parts(_torus_pieces(vertices, faces), path)
        return pb.createCollisionShape(pb.GEOM_MESH, fileName=str(path), physicsClientId=client)
    return pb.createCollisionShape(pb.GEOM_MESH, vertices=vertices.tolist(), physicsClientId=client)


def simulate(spec: SceneSpec, meshes: list[tuple[np.ndarray, np.ndarray, float]]) -> Trajectories:
    """Place, settle and toss the scene's objects; return their poses at each of the scene's frames.

    `meshes` holds (vertices, faces, volume) per object, as from `synth.meshes.object_mesh`.
    """
    import pybullet as pb

    rng = np.random.default_rng(spec.placement_seed)
    client = pb.connect(pb.DIRECT)
    scratch = tempfile.TemporaryDirectory(prefix="tapforge-physics-")
    try:
        pb.setGravity(0, 0, -9.81, physicsClientId=client)
        pb.setTimeStep(1.0 / spec.physics_rate, physicsClientId=client)
        floor = pb.createMultiBody(0, pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=client),
                                   physicsClientId=client)
        pb.changeDynamics(floor, -1, lateralFriction=1.0, restitution=0.0, physicsClientId=client)
        steps_per_frame = spec.physics_rate // spec.frame_rate
        bodies: list[int] = []
        # static objects first, settled for 100 frames; then the dynamic ones are tossed in
        for dynamic in (False, True):
            for obj, (vertices, faces, volume) in zip(spec.objects, meshes):
                if obj.dynamic != dynamic:
                    continue
                shape_id = _collision_shape(client, obj, vertices, faces, Path(scratch.name))
                body = pb.createMultiBody(DENSITY * volume, shape_id, physicsClientId=client)
                pb.changeDynamics(body, -1, lateralFriction=obj.friction, restitution=obj.restitution,
                                  physicsClientId=client)
                region = DYNAMIC_SPAWN_REGION if dynamic else STATIC_SPAWN_REGION
                _place_without_overlap(client, body, region, rng)
                if dynamic:
                    position = np.array(pb.getBasePositionAndOrientation(body, physicsClientId=client)[0])
                    velocity = rng.uniform(*VELOCITY_RANGE) - [position[0], position[1], 0.0]
                    pb.resetBaseVelocity(body, velocity.tolist(), [0, 0, 0], physicsClientId=client)
                bodies.append(body)
            if not dynamic:
                for _ in range(SETTLE_FRAMES * steps_per_frame):
                    pb.stepSimulation(physicsClientId=client)
                for body in bodies:
                    pb.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=client)
                    pb.changeDynamics(body, -1, lateralFriction=0.5, restitution=0.5, physicsClientId=client)
                pb.changeDynamics(floor, -1, lateralFriction=0.3, restitution=0.5, physicsClientId=client)
        order = [o for o in spec.objects if not o.dynamic] + [o for o in spec.objects if o.dynamic]
        body_of = {o.instance_id: b for o, b in zip(order, bodies)}
        num_objects, num_frames = len(spec.objects), spec.num_frames
        positions = np.zeros((num_objects, num_frames, 3))
        quaternions = np.zeros((num_objects, num_frames, 4))
        for t in range(num_frames):
            for i, obj in enumerate(spec.objects):
                pos, quat = pb.getBasePositionAndOrientation(body_of[obj.instance_id], physicsClientId=client)
                positions[i, t], quaternions[i, t] = pos, quat
            for _ in range(steps_per_frame):
                pb.stepSimulation(physicsClientId=client)
        return Trajectories(positions, quaternions)
    finally:
        pb.disconnect(client)
        scratch.cleanup()


def _place_without_overlap(client: int, body: int, region: np.ndarray, rng: np.random.Generator) -> None:
    """Kubric's move_until_no_overlap: random position in the region and random orientation until free."""
    import pybullet as pb

    for _ in range(MAX_PLACEMENT_TRIES):
        pb.resetBasePositionAndOrientation(body, rng.uniform(*region).tolist(), _random_quaternion(rng).tolist(),
                                           physicsClientId=client)
        pb.performCollisionDetection(physicsClientId=client)
        contacts = pb.getContactPoints(bodyA=body, physicsClientId=client)
        if not any(c[8] < 0 for c in contacts):
            return
    # crowded scene: keep the last try; the solver pushes overlapping bodies apart
