"""Procedural meshes in numpy: KuBasic-style primitives and irregular shapes (superquadrics, displaced blobs).

Every mesh is returned as ``(vertices float64 [V,3], faces int32 [F,3])``, centred on its bounding box and
scaled so that its longest side is 1 (the scene scales it afterwards), with outward-facing triangles.
Suzanne comes from Blender itself (see ``tapforge.synth.mesh_files``), so it is not here.

Curved surfaces are tessellated finely enough (about 4 degrees per segment) that no facet shows in a silhouette
or a highlight at 512x512 once the renderer shades them smooth; `FACETED` names the shapes that are meant to
show their facets, and `SHARP_ANGLE` is the dihedral angle above which an edge stays sharp (cube faces, caps).
"""

from __future__ import annotations

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]
SHAPES = (
    "cube",
    "cylinder",
    "sphere",
    "cone",
    "torus",
    "suzanne",
    "capsule",
    "superquadric",
    "blob",
    "icosphere",
    "prism",
)  # suzanne is Blender's own (tapforge.synth.mesh_files.suzanne)
FACETED = frozenset({"icosphere"})  # a geodesic low-poly ball: flat-shaded on purpose
SHARP_ANGLE = 35.0  # degrees


def _grid_faces(rows: int, cols: int, wrap_cols: bool = True) -> np.ndarray:
    """Two triangles per quad of a rows x cols vertex grid (columns wrap around when `wrap_cols`)."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols if wrap_cols else cols - 1), indexing="ij")
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    d = (r + 1) * cols + c
    e = (r + 1) * cols + (c + 1) % cols
    return np.concatenate([np.stack([a, d, b], -1), np.stack([b, d, e], -1)]).reshape(-1, 3)


def _normalise(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    lo, hi = vertices.min(0), vertices.max(0)
    vertices = (vertices - (lo + hi) / 2) / (hi - lo).max()
    # orient every face outward: its normal should point away from the centroid
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = np.einsum("ij,ij->i", normal, tri.mean(1) - vertices.mean(0)) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, ::-1]
    return vertices, faces.astype(np.int32)


def _surface_of_revolution(profile: np.ndarray, segments: int) -> Mesh:
    """Rotate a (radius, z) profile polyline about the z axis; the profile's ends must have radius 0.

    A repeated profile point makes a sharp edge (flat caps) and welds into one ring."""
    theta = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(theta), np.sin(theta)], -1)
    vertices = np.concatenate([np.concatenate([r * ring, np.full((segments, 1), z)], 1) for r, z in profile])
    return _weld(vertices, _grid_faces(len(profile), segments))


def uv_sphere(rings: int = 48, segments: int = 96) -> Mesh:
    phi = np.linspace(0, np.pi, rings + 1)
    return _normalise(*_surface_of_revolution(np.stack([np.sin(phi), -np.cos(phi)], -1), segments))


def cylinder(segments: int = 96, height: float = 1.0) -> Mesh:
    """A cylinder along z, ``height`` times its diameter (0.1: a disc)."""
    profile = np.array([[0, -1], [1, -1], [1, -1], [1, 1], [1, 1], [0, 1]], float) * [0.5, 0.5 * height]
    return _normalise(*_surface_of_revolution(profile, segments))


def cone(segments: int = 96) -> Mesh:
    profile = np.array([[0, -0.5], [0.5, -0.5], [0.5, -0.5], [0, 0.5]], float)
    return _normalise(*_surface_of_revolution(profile, segments))


def capsule(rings: int = 24, segments: int = 96, length: float = 1.2) -> Mesh:
    """A capsule along z: a cylinder ``length`` radii long between two hemispheres."""
    phi = np.linspace(0, np.pi / 2, rings)
    bottom = np.stack([np.sin(phi), -length / 2 - np.cos(phi)], -1)
    top = np.stack([np.sin(phi[::-1]), length / 2 + np.cos(phi[::-1])], -1)
    return _normalise(*_surface_of_revolution(np.concatenate([bottom, top]), segments))


def torus(major_segments: int = 96, minor_segments: int = 32, minor_ratio: float = 0.3) -> Mesh:
    u = np.linspace(0, 2 * np.pi, major_segments, endpoint=False)
    v = np.linspace(0, 2 * np.pi, minor_segments, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    radius = 1 + minor_ratio * np.cos(vv)
    vertices = np.stack([radius * np.cos(uu), radius * np.sin(uu), minor_ratio * np.sin(vv)], -1).reshape(-1, 3)
    faces = _grid_faces(major_segments + 1, minor_segments)
    faces = faces % (major_segments * minor_segments)  # close the last ring onto the first
    vertices, faces = _normalise(vertices, faces)
    # a torus has no single centre to orient by: orient by the tube centre instead
    tri = vertices[faces]
    centroid = tri.mean(1)
    tube_centre = centroid * [1, 1, 0]
    tube_centre = tube_centre / np.linalg.norm(tube_centre, axis=1, keepdims=True) * 0.5 / (1 + minor_ratio)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = np.einsum("ij,ij->i", normal, centroid - tube_centre) < 0
    faces[inward] = faces[inward][:, ::-1]
    return vertices, faces


def cube(bevel: float = 0.05, bevel_segments: int = 4) -> Mesh:
    """A box with rounded edges of radius ``bevel`` (of the half side), flat faces and smooth bevels."""
    ramp = 1 - bevel * (1 - np.linspace(0, 1, bevel_segments + 1))  # 1 - bevel .. 1 across each half bevel
    # an extra line just inside each bevel keeps the flat faces' normals exact under smooth shading
    s = np.concatenate([-ramp[::-1], [-(1 - 1.2 * bevel), 1 - 1.2 * bevel], ramp])
    d = _cube_sphere(len(s) - 1, s)
    inner = np.clip(d, -(1 - bevel), 1 - bevel)
    offset = d - inner
    vertices = inner + bevel * offset / np.linalg.norm(offset, axis=1, keepdims=True)
    return _normalise(*_weld(vertices, _cube_sphere_faces(len(s) - 1)))


def _cube_sphere(subdivisions: int, s: np.ndarray | None = None) -> np.ndarray:
    """Points on the surface of the cube [-1, 1]^3 on a grid (``s``: its coordinates; default even)."""
    s = np.linspace(-1, 1, subdivisions + 1) if s is None else s
    a, b = np.meshgrid(s, s, indexing="ij")
    one = np.ones_like(a)
    sides = [(one, a, b), (-one, b, a), (b, one, a), (a, -one, b), (a, b, one), (b, a, -one)]
    return np.concatenate([np.stack(side, -1).reshape(-1, 3) for side in sides])


def _cube_sphere_faces(subdivisions: int) -> np.ndarray:
    n = subdivisions + 1
    base = _grid_faces(n, n, wrap_cols=False)
    return np.concatenate([base + k * n * n for k in range(6)])


def superquadric(e1: float, e2: float, subdivisions: int = 32) -> Mesh:
    """Superellipsoid with exponents (e1, e2): ~0.1 gives a box, 1 a sphere, 2 an octahedron."""
    d = _cube_sphere(subdivisions)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    x, y, z = d.T
    # radial scaling so that (|x|^(2/e2) + |y|^(2/e2))^(e2/e1) + |z|^(2/e1) = 1
    f = (np.abs(x) ** (2 / e2) + np.abs(y) ** (2 / e2)) ** (e2 / e1) + np.abs(z) ** (2 / e1)
    vertices = d * f[:, None] ** (-e1 / 2)
    vertices, faces = _weld(vertices, _cube_sphere_faces(subdivisions))
    return _normalise(vertices, faces)


def _weld(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    """Merge duplicate vertices (cube-sphere seams) and drop degenerate faces."""
    keys = np.round(vertices, 9)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return unique, faces[keep]


def icosphere(subdivisions: int = 1) -> Mesh:
    """Geodesic sphere: a faceted low-poly ball."""
    t = (1 + 5**0.5) / 2
    v = np.array(
        [
            [-1, t, 0],
            [1, t, 0],
            [-1, -t, 0],
            [1, -t, 0],
            [0, -1, t],
            [0, 1, t],
            [0, -1, -t],
            [0, 1, -t],
            [t, 0, -1],
            [t, 0, 1],
            [-t, 0, -1],
            [-t, 0, 1],
        ],
        float,
    )
    f = np.array(
        [
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ]
    )
    for _ in range(subdivisions):
        a, b, c = f.T
        mids = np.concatenate([(v[a] + v[b]) / 2, (v[b] + v[c]) / 2, (v[c] + v[a]) / 2])
        n, m = len(v), len(f)
        v = np.concatenate([v, mids])
        ab, bc, ca = n + np.arange(m), n + m + np.arange(m), n + 2 * m + np.arange(m)
        f = np.concatenate(
            [np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1), np.stack([c, ca, bc], 1), np.stack([ab, bc, ca], 1)]
        )
        v, f = _weld(v, f)
    return _normalise(v / np.linalg.norm(v, axis=1, keepdims=True), f)


def prism(sides: int = 3) -> Mesh:
    """A straight prism over a regular polygon (triangular by default)."""
    profile = np.array([[0, -0.5], [1, -0.5], [1, -0.5], [1, 0.5], [1, 0.5], [0, 0.5]], float)
    return _normalise(*_surface_of_revolution(profile, sides))


def blob(rng: np.random.Generator, subdivisions: int = 32, amplitude: float = 0.25, octaves: int = 3) -> Mesh:
    """A sphere displaced by a random smooth field (sum of random spherical waves): an irregular pebble."""
    d = _cube_sphere(subdivisions)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    radius = np.ones(len(d))
    for octave in range(octaves):
        freq = 2.0**octave * 1.5
        for _ in range(4):
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            radius += amplitude / 2**octave * np.sin(freq * np.pi * d @ axis + rng.uniform(0, 2 * np.pi)) / 2
    vertices, faces = _weld(d * np.clip(radius, 0.3, None)[:, None], _cube_sphere_faces(subdivisions))
    return _normalise(vertices, faces)


PARAMETER_FREE = {
    "cube": cube,
    "sphere": uv_sphere,
    "cylinder": cylinder,
    "cone": cone,
    "torus": torus,
    "capsule": capsule,
    "icosphere": icosphere,
}


def make_shape(name: str, params: dict) -> Mesh:
    """Build the unit-size mesh for a shape name from `SHAPES` (except suzanne) and its parameters: prism
    ``sides``, superquadric ``e1`` and ``e2``, blob ``seed``, cylinder ``height`` (to diameter), capsule ``length``
    (of its straight part, in radii), icosphere ``subdivisions`` (1: 42 vertices, 3: 642)."""
    if name == "cylinder" and "height" in params:
        return cylinder(height=float(params["height"]))
    if name == "capsule" and "length" in params:
        return capsule(length=float(params["length"]))
    if name == "icosphere" and "subdivisions" in params:
        return icosphere(int(params["subdivisions"]))
    if name in PARAMETER_FREE:
        return PARAMETER_FREE[name]()
    if name == "prism":
        return prism(int(params.get("sides", 3)))
    if name == "superquadric":
        return superquadric(params["e1"], params["e2"])
    if name == "blob":
        return blob(np.random.default_rng(params["seed"]))
    raise ValueError(f"no procedural mesh for shape {name!r}")


def torus_sectors(vertices: np.ndarray, faces: np.ndarray, pieces: int = 16) -> list[Mesh]:
    """A torus (axis z) cut into sectors of whole faces: each sector is nearly convex (the simulator takes one
    convex hull per sector, where one hull of the whole torus would fill its hole)."""
    centre = vertices[faces].mean(1)
    sector = ((np.arctan2(centre[:, 1], centre[:, 0]) + np.pi) / (2 * np.pi) * pieces).astype(int) % pieces
    return [(vertices, faces[sector == k]) for k in range(pieces)]
