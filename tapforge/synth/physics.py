"""PyBullet simulation of a `tapforge.synth.scene.Scene` (Kubric's simulator): placement without overlap, settling, tossing,
scripted (kinematic) objects pushing simulated ones, objects released later (held as kinematic colliders until
their ``release_frame``), and the exact per-frame object poses. A clip costs time linear in its length: each
physics step reads the scripted poses in O(log T)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tapforge.base.errors import TapforgeError
from tapforge.synth.assets import convex_decomposition
from tapforge.synth.checks import Refused, array, check, flag, instance
from tapforge.synth.native import import_pybullet
from tapforge.synth.poses import rotation_vector
from tapforge.synth.scene import Object, Scene

MAX_PLACEMENT_TRIES = 100
DENSITY = 1.0


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


def _collision_shape(client: int, obj: Object, scratch: Path) -> int:
    """The PyBullet collision shape of the object's `tapforge.synth.scene.CollisionShape`."""
    pb = import_pybullet()

    shape = obj.collision_shape()
    if (
        shape.decompose is not None
    ):  # arbitrary meshes: a cached VHACD decomposition of the unit mesh, scaled and shifted
        return pb.createCollisionShape(
            pb.GEOM_MESH,
            fileName=str(convex_decomposition(*shape.decompose)),
            meshScale=[shape.scale] * 3,
            collisionFramePosition=list(shape.offset),
            physicsClientId=client,
        )
    if len(shape.hulls) > 1:  # a compound: one convex hull per part
        path = scratch / f"compound_{len(list(scratch.iterdir()))}.obj"
        _write_obj_parts(list(shape.hulls), path)
        return pb.createCollisionShape(pb.GEOM_MESH, fileName=str(path), physicsClientId=client)
    return pb.createCollisionShape(pb.GEOM_MESH, vertices=shape.hulls[0][0].tolist(), physicsClientId=client)


def _region(value: object) -> np.ndarray:
    """A box ((min x, y, z), (max x, y, z)) with min <= max."""
    allowed = "a box ((min x, min y, min z), (max x, max y, max z)) of finite numbers with min <= max"
    try:
        corners = array((3,), allowed, length=2)(value)
    except Refused:
        raise Refused(allowed) from None
    if (corners[0] > corners[1]).any():
        raise Refused(allowed)
    return corners


class PyBullet:
    """The scene's physics (``scene.simulator``), in Kubric's terms.

    The Python objects hold the state: every `run` first copies each object's pose, velocity, friction and
    restitution into its PyBullet body (bodies are made when an object is first placed or run) and afterwards
    copies the simulated poses and velocities back. Static objects are fixed colliders; scripted ones are
    kinematic: moved along their script every physics step, they push what they hit. An object with a
    ``release_frame`` is kinematic before it (held at its pose, or on its script; runs before the clip count as
    before it) and gets its mass at the start of that frame, with its ``velocity`` and ``angular_velocity``."""

    def __init__(self, scene: Scene):
        pb = import_pybullet()

        self.pb, self.scene = pb, scene
        self.client = pb.connect(pb.DIRECT)
        self._scratch = tempfile.TemporaryDirectory(prefix="tapforge-physics-")
        self.bodies: dict[int, int] = {}  # instance id -> body
        self.massless: set[int] = set()  # instance ids of the bodies without mass (static, scripted or held)
        self.floor_body: int | None = None
        self.recorded = False  # the clip's frames have been simulated and stored in the objects
        self.frame = 0.0  # scene time in frames; settling runs happen before frame 0
        pb.setGravity(0, 0, -9.81, physicsClientId=self.client)
        pb.setTimeStep(1.0 / scene.physics_rate, physicsClientId=self.client)

    def _rigid(self) -> list[Object]:
        """The objects PyBullet moves or collides with (cloth is Blender's)."""
        return [o for o in self.scene.objects if o.rigid]

    @property
    def steps_per_frame(self) -> int:
        return self.scene.physics_rate // self.scene.frame_rate

    def _held(self, obj: Object) -> bool:
        """Moved or held by its script or its release frame now, not by physics: scripted and never released, or
        before its release."""
        if obj.release_frame is not None:  # the frame count adds up steps: allow for its rounding
            return self.frame < obj.release_frame - 1e-6
        return obj.scripted

    def _mass(self, obj: Object) -> float:
        return obj.mass if obj.mass is not None else DENSITY * obj.mesh()[2]

    def _body(self, obj: Object) -> int:
        pb = self.pb
        if obj not in self.scene.objects:
            raise TapforgeError(f"{obj.label()}: add it to the scene before placing or simulating it")
        if not obj.rigid:
            raise TapforgeError(
                f"{obj.label()}: a {type(obj).__name__} is simulated by Blender, not PyBullet; "
                "set its position instead of placing it"
            )
        if obj.instance_id in self.bodies:
            return self.bodies[obj.instance_id]
        shape = _collision_shape(self.client, obj, Path(self._scratch.name))
        fixed = obj.static or self._held(obj)
        body = pb.createMultiBody(0.0 if fixed else self._mass(obj), shape, physicsClientId=self.client)
        self.bodies[obj.instance_id] = body
        if fixed:
            self.massless.add(obj.instance_id)
        elif obj.scripted:  # released before its body was made: physics starts from its script's pose now
            self._take_script_pose(obj)
        self._push(obj)
        return body

    def _take_script_pose(self, obj: Object) -> None:
        position, quaternion = (a[0] for a in obj.pose_at(max(self.frame, 0.0)))
        obj.position, obj.quaternion_xyzw = tuple(position.tolist()), tuple(quaternion.tolist())

    def _give_mass(self, obj: Object) -> None:
        """Give the body the mass its object has now: none while static or held, its own from its release on (or
        once it is neither); a scripted object released now starts from its script's pose."""
        fixed = obj.static or self._held(obj)
        if fixed == (obj.instance_id in self.massless):
            return
        if fixed:
            self.massless.add(obj.instance_id)
        else:
            self.massless.discard(obj.instance_id)
            if obj.scripted:
                self._take_script_pose(obj)
        mass = 0.0 if fixed else self._mass(obj)
        self.pb.changeDynamics(self.bodies[obj.instance_id], -1, mass=mass, physicsClientId=self.client)

    def _push(self, obj: Object) -> None:
        """Copy the object's state into its body."""
        pb, body = self.pb, self.bodies[obj.instance_id]
        held = self._held(obj)
        if held and obj.scripted:
            position, quaternion = (a[0] for a in obj.pose_at(max(self.frame, 0.0)))
        else:
            position, quaternion = obj.position, obj.quaternion_xyzw
        pb.resetBasePositionAndOrientation(body, list(position), list(quaternion), physicsClientId=self.client)
        still = held and not obj.scripted  # held in place: a velocity would push what touches it
        velocity, angular = ((0.0,) * 3,) * 2 if still else (obj.velocity, obj.angular_velocity)
        pb.resetBaseVelocity(body, list(velocity), list(angular), physicsClientId=self.client)
        pb.changeDynamics(
            body, -1, lateralFriction=obj.friction, restitution=obj.restitution, physicsClientId=self.client
        )

    def _sync_in(self) -> None:
        pb, floor = self.pb, self.scene.floor
        if floor is not None:
            if self.floor_body is None:
                plane = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=self.client)
                self.floor_body = pb.createMultiBody(0, plane, physicsClientId=self.client)
            pb.changeDynamics(
                self.floor_body,
                -1,
                lateralFriction=floor.friction,
                restitution=floor.restitution,
                physicsClientId=self.client,
            )
        for obj in self._rigid():
            if obj.instance_id not in self.bodies:
                self._body(obj)
            else:
                self._give_mass(obj)
                self._push(obj)

    def _sync_out(self) -> None:
        pb = self.pb
        for obj in self._rigid():
            if obj.static or self._held(obj):
                continue
            body = self.bodies[obj.instance_id]
            position, quaternion = pb.getBasePositionAndOrientation(body, physicsClientId=self.client)
            velocity, angular = pb.getBaseVelocity(body, physicsClientId=self.client)
            obj.position, obj.quaternion_xyzw = tuple(position), tuple(quaternion)
            obj.velocity, obj.angular_velocity = tuple(velocity), tuple(angular)

    def _scripted(self) -> list[Object]:
        """The objects that follow their script now (moved every step; held objects stay put by themselves)."""
        return [o for o in self._rigid() if o.scripted and self._held(o)]

    def _step(self, scripted: list[Object]) -> None:
        """One physics step; scripted bodies first move to their pose at the step's end."""
        pb = self.pb
        dt = 1.0 / self.steps_per_frame
        for obj in scripted:  # with the velocity of that move, so the contact solver pushes rather than teleports
            (before, after), (q_before, q_after) = obj.pose_at([max(self.frame, 0.0), max(self.frame + dt, 0.0)])
            body, seconds = self.bodies[obj.instance_id], 1.0 / self.scene.physics_rate
            pb.resetBasePositionAndOrientation(body, after.tolist(), q_after.tolist(), physicsClientId=self.client)
            pb.resetBaseVelocity(
                body,
                ((after - before) / seconds).tolist(),
                (rotation_vector(q_before, q_after) / seconds).tolist(),
                physicsClientId=self.client,
            )
        pb.stepSimulation(physicsClientId=self.client)
        self.frame += dt

    def place_without_overlap(
        self,
        obj: Object,
        region: tuple[tuple[float, float, float], tuple[float, float, float]],
        rng: np.random.Generator,
        rotate: bool = True,
    ) -> bool:
        """Kubric's move_until_no_overlap: a random position in ``region`` (min corner, max corner) and a random
        orientation until the object touches nothing placed before (the floor included); False when the scene is
        too crowded after MAX_PLACEMENT_TRIES (the last try is kept: the solver pushes overlaps apart)."""
        where = "simulator.place_without_overlap"
        check(where, "obj", obj, instance(Object))
        region = check(where, "region", region, _region)
        check(where, "rng", rng, instance(np.random.Generator))
        rotate = check(where, "rotate", rotate, flag)
        pb = self.pb
        body = self._body(obj)
        for _ in range(MAX_PLACEMENT_TRIES):
            obj.position = tuple(rng.uniform(*region))
            if rotate:
                q = rng.normal(size=4)
                obj.quaternion_xyzw = tuple(q / np.linalg.norm(q))
            pb.resetBasePositionAndOrientation(
                body, list(obj.position), list(obj.quaternion_xyzw), physicsClientId=self.client
            )
            pb.performCollisionDetection(physicsClientId=self.client)
            if not any(c[8] < 0 for c in pb.getContactPoints(bodyA=body, physicsClientId=self.client)):
                return True
        return False

    def run(self, frames: int | None = None) -> None:
        """Simulate. ``frames`` None: the clip (frames 0 .. T-1), whose poses are stored in the objects and keyed
        in the render; a number: that many frames before the clip (e.g. to let objects settle), not recorded."""
        if self.recorded:
            raise TapforgeError("scene.simulator.run(): the clip is already simulated; run it once, after placing")
        self.frame = 0.0 if frames is None else -float(frames)
        self._sync_in()
        if frames is not None:
            scripted = self._scripted()
            for _ in range(int(frames) * self.steps_per_frame):
                self._step(scripted)
            self.frame = 0.0
            self._sync_out()
            return
        num_frames = self.scene.num_frames
        moving = [o for o in self._rigid() if o.simulated]
        later = [o for o in moving if self._held(o)]  # released during the clip
        positions = np.zeros((len(moving), num_frames, 3))
        quaternions = np.zeros((len(moving), num_frames, 4))
        scripted = self._scripted()
        for t in range(num_frames):
            if later and any(o.release_frame <= t for o in later):
                for obj in [o for o in later if o.release_frame <= t]:
                    self._give_mass(obj)
                    self._push(obj)  # its velocity and angular velocity
                later, scripted = [o for o in later if o.release_frame > t], self._scripted()
            for i, obj in enumerate(moving):
                if self._held(obj):  # before its release: exactly its held or scripted pose
                    (positions[i, t],), (quaternions[i, t],) = obj.pose_at(t)
                    continue
                position, quaternion = self.pb.getBasePositionAndOrientation(
                    self.bodies[obj.instance_id], physicsClientId=self.client
                )
                positions[i, t], quaternions[i, t] = position, quaternion
            for _ in range(self.steps_per_frame):
                self._step(scripted)
        for i, obj in enumerate(moving):
            obj.record(positions[i], quaternions[i])
        self._sync_out()
        self.recorded = True

    def close(self) -> None:
        """Disconnect from PyBullet (the scene's poses stay)."""
        self.pb.disconnect(self.client)
        self._scratch.cleanup()
