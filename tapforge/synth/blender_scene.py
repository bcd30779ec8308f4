"""Build a `tapforge.synth.scene.Scene` in Blender 5 (bpy) and render it with Cycles.

One Blender process renders many scenes: `BlenderRenderer` sets the render settings and the two view
layers once ("rgb" at the configured samples; "aux" at 1 sample with exact Vector, Position, Normal,
Object Index, Depth and an object-coordinates AOV), and `build` clears the previous scene's objects before
building the next. The rgb layer comes back as 8-bit PNG through the scene's view transform, the aux passes
as float arrays via multilayer EXR. A scene with several views (`Scene.cameras`) is built once, with one camera
object per view, and each view renders the same built scene with its camera made the active one (`render`'s
``view``), into its own folder of frame files.

Textures are projected from the object's own coordinates (box projection for objects, planar on the
floor, box on the dome), so texel density stays even on every face: no UV stretching at poles or caps.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tapforge.base.errors import TapforgeError
from tapforge.synth.config import RenderSettings
from tapforge.synth.native import quiet_stdout
from tapforge.synth.pass_frames import AOV_OBJECT_COORDINATES, AOV_SURFACE, RenderedFrames
from tapforge.synth.scene import (
    PROCEDURAL_TEXTURES,
    AreaLight,
    Cloth,
    Dome,
    Emission,
    Environment,
    PointLight,
    Scene,
    SoftBody,
    Sun,
    Texture,
)
from tapforge.synth.shapes import SHARP_ANGLE, uv_sphere
from tapforge.synth.textures import FAMILIES, generate_texture
from tapforge.synth.tracks import Surface

FACE_ATTRIBUTE, CORNER_ATTRIBUTE = "tapforge_face", "tapforge_corner"
SIMPLE_DEFORM = {"bend": "BEND", "twist": "TWIST", "taper": "TAPER", "stretch": "STRETCH"}
# Blender's cloth and soft-body solvers take one time unit per frame and scale gravity by 1e-3, whatever the frame
# rate: a frame is sqrt(0.001) s of their physics (measured: a free sheet falls 0.71 m in 12 frames at speed 1)
SIMULATION_FRAME_SECONDS = 0.001**0.5
AUX_PASSES = ("use_pass_vector", "use_pass_position", "use_pass_normal", "use_pass_object_index", "use_pass_z")
GPU_BACKENDS = ("optix", "cuda")  # render.device=auto tries these in order, then the CPU


def dome_mesh(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The upper half of a fine UV sphere of ``radius``, its faces turned inward (towards the scene)."""
    vertices, faces = uv_sphere()
    vertices = vertices * 2 * radius
    keep = (vertices[faces][..., 2] >= -1e-9).all(axis=1)
    return vertices, faces[keep][:, ::-1]


class BlenderRenderer:
    """Owns the bpy session: render settings once, then `build` and `render` per scene."""

    def __init__(self, settings: RenderSettings):
        import bpy

        self.bpy, self.settings = bpy, settings
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
        scene = bpy.context.scene
        self.scene = scene
        scene.render.engine = "CYCLES"
        self.device, self.device_note = _select_device(bpy, settings.device)
        scene.cycles.device = "CPU" if self.device == "cpu" else "GPU"
        self.apply_sampling(settings)
        scene.render.threads_mode = "FIXED" if settings.threads else "AUTO"
        if settings.threads:
            scene.render.threads = settings.threads
        scene.render.resolution_percentage = 100  # the resolution is each scene's own (see `build`)
        # persistent data keeps the rgb layer's compiled shaders for the aux render: the AOV then comes out zero
        # (tagging the materials for update before the aux render fixes that), and kept over a new scene it changed
        # that scene's pixels; it would save only the ~0.1 s a frame of scene sync and BVH build (measured at 256x256,
        # 16 spp, 8 frames: rgb layer 5.7 s/frame without it, 5.8 with it; aux layer 0.46 vs 0.44 s/frame)
        scene.render.use_persistent_data = False
        scene.render.dither_intensity = 0.0  # the PNG's 8 bits are the rendered values, no added noise
        rgb = scene.view_layers[0]
        rgb.name = "rgb"
        aux = scene.view_layers.new("aux")
        aux.samples = 1
        aux.use_pass_combined = False
        # the scene's denoiser would run on this layer too (~80% of its time at 256x256) and changes none of its passes
        aux.cycles.use_denoising = False
        for flag in AUX_PASSES:
            setattr(aux, flag, True)
        for name in (AOV_OBJECT_COORDINATES, AOV_SURFACE):
            aov = aux.aovs.add()
            aov.name = name  # a view-layer AOV is named by .name; the shader node by .aov_name
            aov.type = "COLOR"
        self.rgb_layer, self.aux_layer = rgb, aux
        self.deforming: list[tuple[object, object]] = []  # (tapforge.synth.scene object, bpy object) of the built scene
        self.cameras: list = []  # the built scene's camera objects, one per view
        self.timing: dict[str, float] = {}
        self.texture_seconds = 0.0  # generating the last built scene's textures (part of its build)

    def apply_sampling(self, settings: RenderSettings) -> None:
        """Set the rgb layer's sampling, denoising and light paths from ``settings`` (the keys a config leaves out
        keep Blender's defaults, as before they existed)."""
        cycles = self.scene.cycles
        cycles.samples = settings.samples
        cycles.use_denoising = settings.denoise
        cycles.use_adaptive_sampling = settings.noise_threshold > 0
        if settings.noise_threshold:
            cycles.adaptive_threshold = settings.noise_threshold
        cycles.adaptive_min_samples = settings.adaptive_min_samples
        cycles.max_bounces = settings.max_bounces
        cycles.diffuse_bounces = settings.diffuse_bounces
        cycles.glossy_bounces = settings.glossy_bounces
        cycles.use_light_tree = settings.light_tree

    # ----------------------------------------------------------------------------------------- building
    def _clear(self) -> None:
        bpy = self.bpy
        for collection in (
            bpy.data.objects,
            bpy.data.meshes,
            bpy.data.materials,
            bpy.data.cameras,
            bpy.data.lights,
            bpy.data.images,
            bpy.data.worlds,
            bpy.data.actions,
            bpy.data.armatures,
        ):
            for item in list(collection):
                collection.remove(item)

    def _load_image(self, path: str):
        """A user's image file as a bpy image; one error line for a file Blender cannot decode (it would render
        magenta)."""
        image = self.bpy.data.images.load(path, check_existing=True)
        if image.size[0] == 0:
            raise TapforgeError(
                f"{path}: Blender cannot decode this image (truncated, or another format under its "
                "suffix); fix: replace or remove it"
            )
        return image

    def _texture_image(self, texture: Texture):
        """The bpy image of a generated texture (made in numpy) or of a user's image file."""
        bpy = self.bpy
        if texture.source not in FAMILIES:
            return self._load_image(texture.source)
        start = time.perf_counter()
        pixels = generate_texture(texture.source, texture.seed, texture.size)
        self.texture_seconds += time.perf_counter() - start
        side = pixels.shape[0]
        image = bpy.data.images.new(f"{texture.source}_{texture.seed}", side, side, alpha=False)
        rgba = np.concatenate([pixels[::-1] / np.float32(255), np.ones((side, side, 1), np.float32)], -1)
        image.pixels.foreach_set(rgba.astype(np.float32).ravel())  # rows bottom-up, as Blender stores them
        return image

    def _material(self, name: str, spec):
        """A bpy material for a `tapforge.synth.scene` Principled or Emission material; every one writes the object
        coordinates AOV."""
        bpy = self.bpy
        mat = bpy.data.materials.new(name)
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        bsdf = nodes["Principled BSDF"]
        if isinstance(spec, Emission):  # shows its texture as it is and lights the scene with it
            nodes.remove(bsdf)
            bsdf = nodes.new("ShaderNodeEmission")
            bsdf.inputs["Strength"].default_value = spec.strength
            links.new(bsdf.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
            color_input = bsdf.inputs["Color"]
        else:
            bsdf.inputs["Roughness"].default_value = spec.roughness
            bsdf.inputs["Metallic"].default_value = spec.metallic
            color_input = bsdf.inputs["Base Color"]
        coords = nodes.new("ShaderNodeTexCoord")
        aov = nodes.new("ShaderNodeOutputAOV")
        aov.aov_name = AOV_OBJECT_COORDINATES
        links.new(coords.outputs["Object"], aov.inputs["Color"])
        self._surface_aov(nodes, links)
        texture = spec.texture
        if texture is None:
            color_input.default_value = (*spec.color, 1.0)
            return mat
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Scale"].default_value = (texture.scale,) * 3
        links.new(coords.outputs["Object"], mapping.inputs["Vector"])
        if texture.source in PROCEDURAL_TEXTURES:
            node_type = {
                "noise": "ShaderNodeTexNoise",
                "voronoi": "ShaderNodeTexVoronoi",
                "wave": "ShaderNodeTexWave",
                "checker": "ShaderNodeTexChecker",
                "magic": "ShaderNodeTexMagic",
                "brick": "ShaderNodeTexBrick",
            }[texture.source]
            tex = nodes.new(node_type)
            if texture.source == "noise":
                tex.inputs["Detail"].default_value = 8.0
            links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
            ramp = nodes.new("ShaderNodeValToRGB")
            ramp.color_ramp.elements[0].color = (*texture.colors[0], 1.0)
            ramp.color_ramp.elements[1].color = (*texture.colors[1], 1.0)
            factor = tex.outputs["Fac"] if "Fac" in tex.outputs else tex.outputs["Distance"]
            links.new(factor, ramp.inputs["Fac"])
            links.new(ramp.outputs["Color"], color_input)
        else:
            tex = nodes.new("ShaderNodeTexImage")
            tex.image = self._texture_image(texture)
            tex.projection = "BOX"
            tex.projection_blend = 0.2
            links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
            links.new(tex.outputs["Color"], color_input)
        return mat

    @staticmethod
    def _surface_aov(nodes, links) -> None:
        """Write (triangle, u, v) of the hit point, from the attributes of a deforming mesh, to the surface AOV."""
        face, corner = nodes.new("ShaderNodeAttribute"), nodes.new("ShaderNodeAttribute")
        face.attribute_name, corner.attribute_name = FACE_ATTRIBUTE, CORNER_ATTRIBUTE
        combine, split = nodes.new("ShaderNodeCombineXYZ"), nodes.new("ShaderNodeSeparateXYZ")
        links.new(corner.outputs["Vector"], split.inputs["Vector"])
        links.new(face.outputs["Fac"], combine.inputs["X"])
        links.new(split.outputs["X"], combine.inputs["Y"])
        links.new(split.outputs["Y"], combine.inputs["Z"])
        aov = nodes.new("ShaderNodeOutputAOV")
        aov.aov_name = AOV_SURFACE
        links.new(combine.outputs["Vector"], aov.inputs["Color"])

    def _mesh_object(
        self, name: str, vertices: np.ndarray, faces: np.ndarray, pass_index: int, material, smooth: bool = False
    ):
        """A mesh object; ``smooth``: smooth shading, edges sharper than `SHARP_ANGLE` kept hard."""
        bpy = self.bpy
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata(vertices.tolist(), [], faces.tolist())
        mesh.validate()
        if smooth:
            mesh.shade_smooth()
            mesh.set_sharp_from_angle(angle=np.radians(SHARP_ANGLE))
        mesh.materials.append(material)
        obj = bpy.data.objects.new(name, mesh)
        obj.pass_index = pass_index
        obj.rotation_mode = "QUATERNION"
        self.scene.collection.objects.link(obj)
        return obj

    def _world(self, background) -> None:
        bpy = self.bpy
        world = bpy.data.worlds.new("world")
        self.scene.world = world
        nodes, links = world.node_tree.nodes, world.node_tree.links
        node = nodes["Background"]
        if background is None or isinstance(background, Dome):  # the dome mesh is all the rays see
            node.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
            return
        node.inputs["Strength"].default_value = background.strength
        if isinstance(background, Environment) and background.hdri is None:
            node.inputs["Color"].default_value = (*background.color, 1.0)
            return
        if isinstance(background, Environment):
            tex = nodes.new("ShaderNodeTexEnvironment")
            tex.image = self._load_image(background.hdri)
            # the importance map is built per render; size it to the image, not to Blender's fixed 1024
            world.cycles.sampling_method = "MANUAL"
            world.cycles.sample_map_resolution = max(64, min(1024, tex.image.size[0] // 2))
        else:
            tex = nodes.new("ShaderNodeTexSky")
            tex.sky_type = "PREETHAM"
            tex.turbidity = background.turbidity
            tex.sun_direction = list(background.sun_direction)
        links.new(tex.outputs["Color"], node.inputs["Color"])

    def _light(self, index: int, light) -> None:
        from mathutils import Vector

        bpy = self.bpy
        kind = {Sun: "SUN", PointLight: "POINT", AreaLight: "AREA"}[type(light)]
        data = bpy.data.lights.new(f"light_{index}", kind)
        obj = bpy.data.objects.new(f"light_{index}", data)
        obj.rotation_mode = "QUATERNION"
        if isinstance(light, Sun):
            data.energy, data.angle = light.strength, np.radians(light.angle)
            obj.rotation_quaternion = Vector(light.direction).to_track_quat("Z", "Y")
        else:
            data.energy, data.color = light.power, light.color
            obj.location = light.position
            if isinstance(light, PointLight):
                data.shadow_soft_size = light.radius
                for t, position in enumerate(() if light.path is None else np.asarray(light.path, float)):
                    obj.location = position
                    obj.keyframe_insert("location", frame=t)
            else:
                data.size = light.size
                towards = Vector(light.position) - Vector(light.look_at)  # an area light shines along its -Z
                obj.rotation_quaternion = towards.to_track_quat("Z", "Y")
        self.scene.collection.objects.link(obj)

    def build(self, scene_spec: Scene) -> None:
        """Create floor, background, objects and cameras, one per view (keyed at every frame with their exact poses),
        and lights."""
        from mathutils import Matrix

        bpy = self.bpy
        self._clear()
        self.texture_seconds = 0.0
        spec, scene = scene_spec, self.scene
        scene.frame_start, scene.frame_end = 0, spec.num_frames - 1
        # the scene's resolution, the one its camera intrinsics use (both come from the config's render.resolution)
        scene.render.resolution_x, scene.render.resolution_y = spec.resolution
        scene.render.fps = spec.frame_rate
        scene.render.use_motion_blur = spec.motion_blur > 0
        scene.render.motion_blur_shutter = max(spec.motion_blur, 1e-3)
        scene.view_settings.view_transform = spec.view_transform
        self._world(spec.background)
        if spec.floor is not None:
            half = spec.floor.size / 2
            vertices = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]])
            floor = self._mesh_object(
                "floor", vertices, np.array([[0, 1, 2], [0, 2, 3]]), 0, self._material("floor", spec.floor.material)
            )
        if isinstance(spec.background, Dome):
            self._dome(spec.background)
        positions, quaternions = spec.object_poses()
        colliders = [floor] if spec.floor is not None else []
        self.deforming = []
        for obj, pos, quat in zip(spec.objects, positions, quaternions):
            vertices, faces, _ = obj.mesh()
            animated = obj.vertex_positions(spec.num_frames, spec.frame_rate)
            if animated is not None:
                vertices = animated[0]
            blender_obj = self._mesh_object(
                f"object_{obj.instance_id}",
                vertices,
                faces,
                obj.instance_id,
                self._material(f"material_{obj.instance_id}", obj.material),
                smooth=obj.smooth,
            )
            if animated is not None:
                self._vertex_animation(obj, blender_obj, animated)
            for t in range(spec.num_frames):
                blender_obj.location = pos[t]
                blender_obj.rotation_quaternion = (quat[t, 3], quat[t, 0], quat[t, 1], quat[t, 2])
                blender_obj.keyframe_insert("location", frame=t)
                blender_obj.keyframe_insert("rotation_quaternion", frame=t)
            if obj.deforms:
                self._deformation(obj, blender_obj, spec.num_frames, spec.frame_rate)
                self.deforming.append((obj, blender_obj))
            if obj.rigid:
                colliders.append(blender_obj)
        if any(isinstance(obj, (Cloth, SoftBody)) for obj, _ in self.deforming):  # they collide with the rigid
            for collider in colliders:
                collider.modifiers.new("collision", "COLLISION")
                collider.collision.thickness_outer = 0.005
        self.cameras = []
        for index, view in enumerate(spec.cameras):  # one camera object per view, keyed at every frame
            name = "camera" if index == 0 else f"camera_{index}"
            cam_data = bpy.data.cameras.new(name)
            cam_data.lens = view.focal_length
            cam_data.sensor_fit = "HORIZONTAL"
            cam_data.sensor_width = view.sensor_width
            cam_data.clip_start, cam_data.clip_end = 0.01, 1000.0
            camera = bpy.data.objects.new(name, cam_data)
            camera.rotation_mode = "QUATERNION"
            scene.collection.objects.link(camera)
            for t, matrix in enumerate(view.matrices(spec.num_frames)):
                camera.matrix_world = Matrix(matrix.tolist())
                camera.keyframe_insert("location", frame=t)
                camera.keyframe_insert("rotation_quaternion", frame=t)
            self.cameras.append(camera)
        scene.camera = self.cameras[0]
        for index, light in enumerate(spec.lights):
            self._light(index, light)

    @staticmethod
    def _vertex_animation(spec, blender_obj, frames: np.ndarray) -> None:
        """Per-frame vertex positions as shape keys: key k is fully on at frame k and off at its neighbours, so the
        mesh is exactly frame k's at frame k (and in between, the linear blend of the two frames)."""
        if len(blender_obj.data.vertices) != frames.shape[1]:
            raise TapforgeError(
                f"{spec.label()}: Blender dropped vertices of its mesh (duplicates?); give a clean mesh"
            )
        blender_obj.shape_key_add(name="frame_0", from_mix=False)
        for k in range(1, len(frames)):
            key = blender_obj.shape_key_add(name=f"frame_{k}", from_mix=False)
            key.data.foreach_set("co", frames[k].astype(np.float32).ravel())
            for frame, value in ((k - 1, 0.0), (k, 1.0), (k + 1, 0.0)):
                key.value = value
                key.keyframe_insert("value", frame=frame)

    def _deformation(self, spec, blender_obj, num_frames: int, frame_rate: int) -> None:
        """Mark a deforming mesh's triangles and corners for the surface AOV, then add its deformation: Simple
        Deform / Wave modifiers keyed at every frame, or Blender's cloth or soft-body simulation."""
        mesh = blender_obj.data
        num_faces = len(mesh.polygons)
        loop_start = np.empty(num_faces, np.int32)
        mesh.polygons.foreach_get("loop_start", loop_start)
        if len(mesh.loops) != 3 * num_faces or (loop_start != 3 * np.arange(num_faces)).any():
            raise TapforgeError(f"{spec.label()}: a deforming mesh must be all triangles; triangulate it")
        mesh.attributes.new(FACE_ATTRIBUTE, "FLOAT", "FACE").data.foreach_set(
            "value", np.arange(num_faces, dtype=np.float32)
        )
        corners = np.tile(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), (num_faces, 1))  # (u, v, 0)
        mesh.attributes.new(CORNER_ATTRIBUTE, "FLOAT_VECTOR", "CORNER").data.foreach_set("vector", corners.ravel())
        frames = np.arange(num_frames + 1)  # one past the clip: the vector pass of the last frame looks there
        for k, deform in enumerate(spec.deform):
            if deform.kind == "wave":
                modifier = blender_obj.modifiers.new(f"deform_{k}", "WAVE")
                modifier.use_normal = True
                modifier.use_x, modifier.use_y = deform.axis != "Y", deform.axis != "X"
                modifier.height, modifier.width = deform.amount, deform.wavelength
                modifier.speed = deform.wavelength / deform.period
                modifier.narrowness = 1.5
                modifier.time_offset = -10.0 * deform.period  # ripples already cover the object at frame 0
                continue
            modifier = blender_obj.modifiers.new(f"deform_{k}", "SIMPLE_DEFORM")
            modifier.deform_method, modifier.deform_axis = SIMPLE_DEFORM[deform.kind], deform.axis
            prop = "angle" if deform.kind in ("bend", "twist") else "factor"
            for t, value in zip(frames, deform.strength(frames)):
                setattr(modifier, prop, float(value))
                modifier.keyframe_insert(prop, frame=int(t))
        if isinstance(spec, Cloth):
            self._cloth(spec, blender_obj, num_frames, frame_rate)
        elif isinstance(spec, SoftBody):
            self._soft_body(spec, blender_obj, num_frames, frame_rate)

    @staticmethod
    def _cloth(spec, blender_obj, num_frames: int, frame_rate: int) -> None:
        """Blender's cloth on the sheet, in real time at the clip's frame rate, cached from frame 0."""
        modifier = blender_obj.modifiers.new("cloth", "CLOTH")
        settings = modifier.settings
        settings.time_scale = 1.0 / (frame_rate * SIMULATION_FRAME_SECONDS)
        settings.quality = max(5, round(4 * settings.time_scale))  # solver steps per frame, for stability
        settings.mass = 0.3
        settings.tension_stiffness = settings.compression_stiffness = spec.stiffness
        settings.bending_stiffness = spec.bending
        pinned = spec.pinned_vertices()
        if len(pinned):
            group = blender_obj.vertex_groups.new(name="pin")
            group.add(pinned.tolist(), 1.0, "REPLACE")
            settings.vertex_group_mass = "pin"
        modifier.collision_settings.distance_min = 0.005
        modifier.point_cache.frame_start, modifier.point_cache.frame_end = 0, num_frames

    @staticmethod
    def _soft_body(spec, blender_obj, num_frames: int, frame_rate: int) -> None:
        """Blender's soft body around the keyed rigid motion: goal springs pull each vertex towards its place on
        the rigid shape, so the surface lags, squashes on the floor and wobbles; real time at the clip's frame
        rate."""
        modifier = blender_obj.modifiers.new("soft_body", "SOFT_BODY")
        settings = modifier.settings
        settings.speed = 1.0 / (frame_rate * SIMULATION_FRAME_SECONDS)
        settings.use_goal = settings.use_edges = True
        settings.pull = settings.push = 0.9  # edge springs: the surface keeps its area while it squashes
        settings.goal_default, settings.goal_min, settings.goal_max = 0.6, 0.0, 1.0
        settings.goal_spring, settings.goal_friction = spec.stiffness, spec.damping
        settings.effector_weights.gravity = 0.0  # gravity is in the rigid motion already; the surface only lags it
        modifier.point_cache.frame_start, modifier.point_cache.frame_end = 0, num_frames

    def read_surfaces(self, num_frames: int) -> dict[int, Surface]:
        """The deforming objects' evaluated meshes at every frame, by instance id (world coordinates).

        Steps through the frames in order, which also runs (and caches) the cloth and soft-body simulations before
        the render, which then shows exactly these meshes.
        A deformation that changes the mesh's topology is refused, naming the object."""
        if not self.deforming:
            return {}
        bpy, scene = self.bpy, self.scene
        frames: dict[int, list] = {spec.instance_id: [] for spec, _ in self.deforming}
        topology: dict[int, np.ndarray] = {}
        for t in range(num_frames + 1):
            scene.frame_set(t)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            for spec, blender_obj in self.deforming:
                evaluated = blender_obj.evaluated_get(depsgraph)
                mesh = evaluated.to_mesh()
                corners = np.empty(len(mesh.loops), np.int32)
                mesh.loops.foreach_get("vertex_index", corners)
                vertices = np.empty(3 * len(mesh.vertices), np.float32)
                mesh.vertices.foreach_get("co", vertices)
                matrix = np.array(evaluated.matrix_world, float)
                evaluated.to_mesh_clear()
                if not np.isfinite(vertices).all():
                    raise TapforgeError(
                        f"{spec.label()}: its simulation diverged at frame {t} (vertices went to "
                        "infinity); make it stiffer or its mesh coarser"
                    )
                known = topology.setdefault(spec.instance_id, corners)
                if corners.shape != known.shape or (corners != known).any():
                    raise TapforgeError(
                        f"{spec.label()}: its deformation changes the mesh's topology at frame {t}; "
                        "use modifiers and simulations that only move vertices"
                    )
                if t < num_frames:
                    frames[spec.instance_id].append(vertices.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3])
        scene.frame_set(0)
        return {
            spec.instance_id: Surface(
                np.stack(frames[spec.instance_id]), topology[spec.instance_id].reshape(-1, 3), spec.two_sided
            )
            for spec, _ in self.deforming
        }

    def _dome(self, dome: Dome) -> None:
        """The textured background dome: static background (id 0), trackable, lights the scene.

        It casts no shadows (the sun shines through it) and is not a light to sample (its light arrives
        by the rays that hit it, like an unsampled sky)."""
        material = self._material("dome", dome.material)
        material.cycles.emission_sampling = "NONE"
        obj = self._mesh_object("dome", *dome_mesh(dome.radius), 0, material, smooth=True)
        obj.visible_shadow = False

    # ----------------------------------------------------------------------------------------- rendering
    def _render_layers(self, out_dir: Path, rgb: bool, aux: bool, motion_blur: bool | None = None) -> float:
        scene = self.scene
        self.rgb_layer.use = rgb
        self.aux_layer.use = aux
        saved_blur = scene.render.use_motion_blur
        if motion_blur is not None:
            scene.render.use_motion_blur = motion_blur
        # aux passes sample exactly the pixel centre (a box filter of ~zero width); rgb keeps the default filter
        scene.cycles.pixel_filter_type = "BLACKMAN_HARRIS" if rgb else "BOX"
        scene.cycles.filter_width = 1.5 if rgb else 0.01
        settings = scene.render.image_settings
        if rgb:  # 8-bit PNG through the view transform
            settings.media_type = "IMAGE"
            settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGB", "8"
        else:  # the exact passes as 32-bit floats
            settings.media_type = "MULTI_LAYER_IMAGE"
            settings.file_format, settings.exr_codec, settings.color_depth = "OPEN_EXR_MULTILAYER", "ZIP", "32"
        scene.render.filepath = str(out_dir / ("rgb_" if rgb else "aux_"))
        start = time.perf_counter()
        with quiet_stdout():
            self.bpy.ops.render.render(animation=True)
        scene.render.use_motion_blur = saved_blur
        return time.perf_counter() - start

    def render(self, num_frames: int, scratch: str | None = None, view: int = 0) -> RenderedFrames:
        """Render the built scene from view ``view``'s camera into files (a folder under ``scratch``, or the system's
        temporary folder): the rgb frames and the exact aux passes, read back frame by frame through the returned
        `RenderedFrames`. The views share the built scene: only the active camera changes between them.

        Records ``self.timing``: 'path_tracing' (the rgb layer) and 'aux_passes' seconds.
        """
        self.scene.camera = self.cameras[view]
        frames = RenderedFrames(num_frames, scratch)
        self.timing = {"path_tracing": self._render_layers(frames.folder, rgb=True, aux=False)}
        # aux passes always without motion blur: Cycles has no vector pass with blur on
        self.timing["aux_passes"] = self._render_layers(frames.folder, rgb=False, aux=True, motion_blur=False)
        return frames


def _select_device(bpy, device: str) -> tuple[str, str | None]:
    """Enable the Cycles device for ``render.device``; return the one used (cpu, cuda or optix) and, for ``auto``,
    the line that says which, for the user (the render job shows it once, above its progress bar).

    ``auto`` takes OptiX GPUs if Blender finds any, else CUDA GPUs, else the CPU. An explicit cuda or optix that
    Blender cannot use is a clear error.
    """
    if device == "cpu":
        return "cpu", None

    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in GPU_BACKENDS if device == "auto" else (device,):
        gpus = _enable_gpus(prefs, backend)
        if gpus:
            note = f"render.device=auto: using {backend.upper()} ({', '.join(gpus)})" if device == "auto" else None
            return backend, note
        if device != "auto" and gpus is None:
            raise TapforgeError(
                f"render.device={device}: this Blender build has no {backend.upper()} support; "
                "use render.device=auto or cpu"
            )
        if device != "auto":
            raise TapforgeError(
                f"render.device={device}: Blender finds no {backend.upper()} GPU (NVIDIA driver "
                "loaded? in Docker: run with --gpus all); use render.device=auto or cpu"
            )
    return "cpu", "render.device=auto: no OptiX or CUDA GPU found, using CPU"


def _enable_gpus(prefs, backend: str) -> list[str] | None:
    """Make `backend` the Cycles compute type and use only its GPUs; their names (None: not in this build)."""
    try:
        prefs.compute_device_type = backend.upper()
    except TypeError:  # not among the enum's items: Blender was built without it
        return None
    with quiet_stdout():  # Cycles prints its CUDA/HIP library probes to stdout
        prefs.refresh_devices()
    for d in prefs.devices:
        d.use = d.type == backend.upper()
    return [d.name for d in prefs.devices if d.use]
