"""Declared layering, read from the source: no import circle anywhere under tapforge/ (function-level imports
count), and the scene API works, and is importable, without Blender or PyBullet."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tapforge"
BACKENDS = ("bpy", "bmesh", "mathutils", "pybullet")  # what the scene API leaves to the pipeline's handed-in parts


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> tuple[set[str], set[str]]:
    """Every import anywhere in the module (top level, functions, TYPE_CHECKING blocks): the tapforge modules it
    names and the top-level names of the others."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    own, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import module` imports that module; `from module import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "tapforge":
                other.add(target.split(".")[0])
                continue
            while target not in MODULES:  # tapforge.x.y.name -> the module tapforge.x.y
                target = target.rpartition(".")[0]
            if target != name:
                own.add(target)
    return own, other


GRAPH = {name: _imports(name) for name in MODULES}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_walk_sees_function_level_imports():
    assert len(MODULES) > 40 and "tapforge.synth.scene" in MODULES
    own, other = GRAPH["tapforge.synth.mesh_files"]
    assert "bpy" in other and "tapforge.synth.native" in own  # bpy is imported inside functions there
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_under_tapforge_is_part_of_an_import_circle():
    cycle = _find_cycle({name: own for name, (own, _) in GRAPH.items()})
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_scene_api_reaches_neither_blender_nor_pybullet():
    """scene.py and every tapforge module it imports (at any level) import no Blender module and not PyBullet."""
    seen, todo = set(), ["tapforge.synth.scene"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += GRAPH[name][0]
    reached = {name: sorted(GRAPH[name][1] & set(BACKENDS)) for name in sorted(seen)}
    assert not any(reached.values()), {name: found for name, found in reached.items() if found}
    assert "tapforge.synth.poses" in seen and "tapforge.synth.physics" not in seen


SCENE_WITHOUT_BACKENDS = """
import sys
for name in {backends!r}:
    sys.modules[name] = None  # importing any of them now fails
import numpy as np
from tapforge.base.errors import TapforgeError
from tapforge.synth.scene import Camera, Floor, Principled, Scene, Shape, about_z

scene = Scene((64, 48), num_frames=5)
scene.camera = Camera(focal_length=35).look_at((6.0, -6.0, 4.0), (0.0, 0.0, 0.5))
scene.floor = Floor(material=Principled())
cube = scene.add(Shape("cube", size=0.5).keyframe(0, (0, 0, 0.25)).keyframe(4, (2, 0, 0.25), about_z(np.pi / 2)))
positions, quaternions = scene.object_poses()
assert positions.shape == (1, 5, 3) and np.allclose(positions[0, 2], [1, 0, 0.25])
assert np.allclose(quaternions[0, 4], about_z(np.pi / 2))
K = scene.camera.intrinsics(scene.resolution)
assert K[0, 2] == 32 and K[1, 2] == 24 and scene.camera.matrices(5).shape == (5, 4, 4)
assert len(cube.mesh()[0]) > 8 and cube.collision_shape().hulls  # a procedural shape needs no reader
ball = Shape("sphere", position=(0.0, 0.0, 2.0))  # moves by physics: the scene needs a simulator
for needs in (lambda: scene.add(ball) and scene.simulate_if_needed(), lambda: scene.add(Shape("suzanne")).mesh()):
    try:
        needs()
    except TapforgeError as err:
        print(str(err))
    else:
        raise AssertionError("no error")
print(sorted(m for m in {backends!r} if sys.modules.get(m) is not None))
"""


def test_a_scene_is_built_and_read_without_blender_or_pybullet():
    code = SCENE_WITHOUT_BACKENDS.format(backends=BACKENDS)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    simulator, reader, imported = result.stdout.strip().splitlines()
    assert "Scene(..., simulator_factory=tapforge.synth.physics.PyBullet)" in simulator
    assert "Scene(..., mesh_reader=tapforge.synth.mesh_files.BlenderMeshReader())" in reader
    assert imported == "[]"
