"""Posed RGBA images of one model on the GPU: the Renderer and its morph binding.

Everything model-sized (vertices, indices, textures, the framebuffers) is uploaded
once when a Renderer is made; a render uploads only what changed (bone matrices,
morph offsets, material parameters), draws the materials in file order, and reads
the image back into a preallocated array. See DESIGN.md for the pose, framing and
lighting conventions.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources

import moderngl
import numpy as np

from renderer.context import get_context
from renderer.errors import ModelError
from renderer.framing import HEAD_FRACTION, Camera, fit_depth, head_camera, head_center_x, model_bounds
from renderer.model import MaterialFlag, Model
from renderer.morphs import MorphEvaluator
from renderer.posing import Drivers, Poser
from renderer.shading import MMD_LIGHT, TABLE_WIDTH, MaterialMaps, TextureCache, material_table
from renderer.sided import with_sided_morphs
from renderer.skeleton import Skeleton
from renderer.textures import load_texture, shared_toon

SHADINGS = ("phong", "toon")
# With no head bounds given: the head is this fraction of the model's height below its top
# (anime characters are about 5-7 heads tall; the first head of a tall one is ~15%).
HEAD_FRACTION_GUESS = 0.15
_BLEND = (moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA, moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA)
_STATIC_DTYPE = np.dtype([("in_position", "<f4", 3), ("in_normal", "<f4", 3), ("in_uv", "<f4", 2),
                          ("in_bones", "<i4", 4), ("in_weights", "<f4", 4), ("in_sdef_c", "<f4", 3),
                          ("in_sdef_r0", "<f4", 3), ("in_sdef_r1", "<f4", 3), ("in_deform", "<i4"),
                          ("in_edge", "<f4")])
_STATIC_FORMAT = " ".join(f"{max(_STATIC_DTYPE[name].shape, default=1)}{_STATIC_DTYPE[name].base.kind}"
                          for name in _STATIC_DTYPE.names)  # "3f 3f 2f 4i ..."


@dataclass(frozen=True)
class _Draw:
    """One material's draw call and the state it needs."""

    material: int
    first: int
    count: int
    double_sided: bool
    edge: bool
    texture: moderngl.Texture
    sphere: moderngl.Texture
    toon: moderngl.Texture


class Renderer:
    """Renders one model in posed states; create once, render many, then release().

    ``head_bounds`` is (top_y, chin_y) in model space; None frames the top of the
    model's bounding box with a head 15% of the model's height tall (a guess; annotate
    real models). ``drivers`` says what the numbers of a pose move (:mod:`renderer.posing`,
    made from a pose schema by ``annotator.binding``); without them a pose is empty and
    only ``extra_morphs`` pose the model. ``framing`` is (head height, head centre) as
    shares of the image height (DESIGN.md's (0.5, 0.5)). ``shading`` "phong" is
    DESIGN.md's lighting, "toon" MMD's look (``edges`` adds its outlines). ``msaa`` > 0
    multisamples; ``gpu`` picks the EGL device.
    """

    def __init__(self, model: Model, head_bounds: tuple[float, float] | None = None,
                 drivers: Drivers | None = None, size: int = 256, shading: str = "phong",
                 msaa: int = 0, gpu: int | None = None, edges: bool = False,
                 framing: tuple[float, float] = (HEAD_FRACTION, 0.5)):
        if shading not in SHADINGS:
            raise ValueError(f"shading must be one of {SHADINGS}, not {shading!r}")
        if len(model.vertices) == 0 or len(model.indices) == 0:
            raise ModelError(model.path, "has no vertices or faces to render")
        drivers = drivers or Drivers(size=0)
        model = with_sided_morphs(model, drivers.morphs)
        self.model, self.size, self.shading, self.msaa = model, int(size), shading, int(msaa)
        self.edges = edges
        self.head_bounds = head_bounds or guess_head_bounds(model)
        self.camera = fit_depth(head_camera(*self.head_bounds, head_center_x(model), *framing), model)
        self.poser = Poser(model, drivers)
        self._skeleton = Skeleton(model.bones, model.path)
        self._evaluator = MorphEvaluator(model)
        self._ctx = get_context(gpu)
        self._objects: list = []
        self._textures = TextureCache(self._ctx)
        # a renderer dropped without release() frees its GPU objects when collected, not at exit
        self._release = weakref.finalize(self, _release_gpu_objects, self._objects, self._textures)
        self._release.atexit = False  # the context may be gone by then
        try:
            self._build_programs()
            self._build_buffers()
            self._build_framebuffers()
            self._draws = self._build_draws()
            self._last_weights: dict[int, float] | None = None
            self._last_rotation: tuple | None = None
            self._apply_morphs({})
            self._apply_rotation(self.poser.check(None))
        except BaseException:
            self.release()
            raise

    # -- public API ---------------------------------------------------------------------

    def render(self, pose: Sequence[float] | None = None, *, materials: Iterable[int] | None = None,
               extra_morphs: Mapping[str, float] | None = None,
               camera: Camera | None = None, faces: np.ndarray | None = None) -> np.ndarray:
        """One (size, size, 4) uint8 straight-alpha image of ``pose`` (``drivers.size`` numbers; None: all 0).

        ``materials`` draws only those material indices (layer stacks); ``faces`` only the
        triangle runs of a (K, 2) array of [first, end) triangle numbers (parts of materials,
        :func:`face_runs` of a mask), each with its material's state, in file order;
        ``extra_morphs`` adds {morph name: weight} on top of the pose's morphs; ``camera``
        replaces the head framing (its depth range is refitted to the model).
        """
        out = np.empty((self.size, self.size, 4), np.uint8)
        self._render_into(out, pose, materials, extra_morphs, camera, faces)
        return out

    def render_batch(self, poses: Sequence[Sequence[float]] | np.ndarray, *, out: np.ndarray | None = None,
                     materials: Iterable[int] | None = None, extra_morphs: Mapping[str, float] | None = None,
                     camera: Camera | None = None, faces: np.ndarray | None = None) -> np.ndarray:
        """(N, size, size, 4) images of N poses, written into ``out`` when given; options as :meth:`render`."""
        poses = np.asarray(poses, np.float64)
        size = self.poser.drivers.size
        if poses.ndim != 2 or poses.shape[1] != size:
            raise ValueError(f"poses must be an (N, {size}) array, got shape {poses.shape}")
        if out is None:
            out = np.empty((len(poses), self.size, self.size, 4), np.uint8)
        for pose, image in zip(poses, out):
            self._render_into(image, pose, materials, extra_morphs, camera, faces)
        return out

    def redraw(self, out: np.ndarray | None = None) -> np.ndarray:
        """Draw and read back the last pose again, with no posing work: the bare
        draw-and-read loop that benchmarks measure the full path against."""
        out = np.empty((self.size, self.size, 4), np.uint8) if out is None else out
        self._draw_into(out, self._select(None), self.camera)
        return out

    def release(self) -> None:
        """Free every GPU object this renderer made (the shared context stays); garbage
        collection does the same for a renderer nobody released."""
        self._release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- per render ---------------------------------------------------------------------

    def _render_into(self, out: np.ndarray, pose, materials, extra_morphs, camera, faces=None) -> None:
        pose = self.poser.check(pose)
        self._apply_morphs(self.poser.weights(pose, extra_morphs))
        self._apply_rotation(pose)
        draws = self._select(materials) if faces is None else self._select_faces(faces)
        self._draw_into(out, draws, fit_depth(camera, self.model) if camera else self.camera)

    def _apply_morphs(self, weights: dict[int, float]) -> None:
        if weights == self._last_weights:
            return
        state = self._evaluator.evaluate(weights)
        dynamic = self._dynamic
        dynamic[:, :3] = state.vertex_offsets
        dynamic[:, 3:] = state.uv_offsets[:, :2]
        self._dynamic_buffer.write(dynamic)
        self._material_buffer.write(material_table(state.materials, state.tint_add, self._maps))
        self._visible = np.asarray(state.material_visible, bool)
        self._morph_state = state
        self._last_weights = weights
        self._last_rotation = None  # bone morphs may have changed

    def _apply_rotation(self, pose: np.ndarray) -> None:
        key = self.poser.rotation_key(pose)
        if key == self._last_rotation:
            return
        rotations = self.poser.rotations(pose)
        bone_pose = self._skeleton.pose(*self._morph_state.combine(rotations))
        self._bone_buffer.write(np.ascontiguousarray(bone_pose.matrices.transpose(0, 2, 1), np.float32))
        self._last_rotation = key

    def _select(self, materials: Iterable[int] | None) -> list[_Draw]:
        if materials is None:
            return [d for d in self._draws if self._visible[d.material]]
        chosen = set(int(m) for m in materials)
        count = len(self.model.materials)
        bad = sorted(m for m in chosen if not 0 <= m < count)
        if bad:
            raise ValueError(f"material indices out of range 0..{count - 1}: {bad}")
        return [d for d in self._draws if d.material in chosen and self._visible[d.material]]

    def _select_faces(self, runs: np.ndarray) -> list[_Draw]:
        """The visible draws cut to the triangle runs [first, end): one draw per overlap, in file order."""
        runs = np.asarray(runs, np.int64).reshape(-1, 2) * 3
        starts, ends = runs[:, 0], runs[:, 1]
        draws = []
        for draw in self._select(None):
            lo, hi = draw.first, draw.first + draw.count
            for k in range(np.searchsorted(ends, lo, "right"), np.searchsorted(starts, hi, "left")):
                first, last = max(starts[k], lo), min(ends[k], hi)
                if last > first:
                    draws.append(replace(draw, first=int(first), count=int(last - first)))
        return draws

    def _draw_into(self, out: np.ndarray, draws: list[_Draw], camera: Camera) -> None:
        ctx = self._ctx
        self._scene_fbo.use()
        self._scene_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable_only(moderngl.DEPTH_TEST | moderngl.BLEND)
        ctx.blend_func = _BLEND
        ctx.depth_func = "<="  # as MMD: a coplanar later material (eye highlight, decal) wins
        ctx.front_face = "ccw"
        self._bone_buffer.bind_to_storage_buffer(0)
        self._material_buffer.bind_to_storage_buffer(1)
        matrix = camera.matrix.T.tobytes()
        self._draw_pass(self._program, self._vao, draws, matrix, "back", lambda d: not d.double_sided)
        if self.edges:
            self._edge_program["edge_unit"].value = camera.pixel_size(self.size)
            self._draw_pass(self._edge_program, self._edge_vao, [d for d in draws if d.edge],
                            matrix, "front", lambda d: True)
        if self.msaa:
            ctx.copy_framebuffer(self._resolved_fbo, self._scene_fbo)
        self._output_fbo.use()
        ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
        self._accumulated.use(3)
        self._resolve_vao.render(moderngl.TRIANGLES, vertices=3)
        self._output_fbo.read_into(out, components=4)

    def _draw_pass(self, program, vao, draws: list[_Draw], matrix: bytes, cull_face: str, culled) -> None:
        ctx = self._ctx
        program["camera"].write(matrix)
        ctx.cull_face = cull_face
        uniform = program["material"]
        culling = None
        for draw in draws:
            if culled(draw) != culling:
                culling = culled(draw)
                (ctx.enable if culling else ctx.disable)(moderngl.CULL_FACE)
            uniform.value = draw.material
            draw.texture.use(0)
            draw.sphere.use(1)
            if self.shading == "toon":
                draw.toon.use(2)
            vao.render(moderngl.TRIANGLES, vertices=draw.count, first=draw.first)

    # -- set-up -------------------------------------------------------------------------

    def _keep(self, obj):
        self._objects.append(obj)
        return obj

    def _build_programs(self) -> None:
        fragment = "toon.frag" if self.shading == "toon" else "phong.frag"
        self._program = self._keep(self._ctx.program(
            vertex_shader=_source("skin.glsl", "material.glsl", "mesh.vert"),
            fragment_shader=_source("material.glsl", "lighting.glsl", fragment)))
        self._program["base_texture"] = 0
        self._program["sphere_texture"] = 1
        if self.shading == "toon":
            self._program["toon_texture"] = 2
        if self.edges:
            self._edge_program = self._keep(self._ctx.program(
                vertex_shader=_source("skin.glsl", "material.glsl", "mesh.vert", defines=("EDGE",)),
                fragment_shader=_source("material.glsl", "lighting.glsl", "edge.frag")))
        self._resolve_program = self._keep(self._ctx.program(
            vertex_shader=_source("resolve.vert"), fragment_shader=_source("resolve.frag")))
        self._resolve_program["accumulated"] = 3

    def _build_buffers(self) -> None:
        ctx, model = self._ctx, self.model
        static = self._keep(ctx.buffer(static_vertex_data(model)))
        self._dynamic = np.zeros((len(model.vertices), 5), np.float32)
        self._dynamic_buffer = self._keep(ctx.buffer(self._dynamic, dynamic=True))
        index = self._keep(ctx.buffer(np.ascontiguousarray(model.indices, np.uint32)))
        self._bone_buffer = self._keep(ctx.buffer(reserve=64 * max(len(model.bones), 1), dynamic=True))
        self._material_buffer = self._keep(ctx.buffer(reserve=4 * TABLE_WIDTH * len(model.materials), dynamic=True))
        content = [(static, _STATIC_FORMAT, *_STATIC_DTYPE.names),
                   (self._dynamic_buffer, "3f 2f", "in_morph", "in_uv_morph")]
        self._vao = self._keep(ctx.vertex_array(self._program, _present(self._program, content),
                                                index_buffer=index, index_element_size=4))
        if self.edges:
            self._edge_vao = self._keep(ctx.vertex_array(self._edge_program, _present(self._edge_program, content),
                                                         index_buffer=index, index_element_size=4))
        self._resolve_vao = self._keep(ctx.vertex_array(self._resolve_program, []))

    def _build_framebuffers(self) -> None:
        ctx, shape = self._ctx, (self.size, self.size)
        self._accumulated = self._keep(ctx.texture(shape, 4, dtype="f2"))
        self._accumulated.filter = (moderngl.NEAREST, moderngl.NEAREST)
        if self.msaa:
            color = self._keep(ctx.renderbuffer(shape, 4, samples=self.msaa, dtype="f2"))
            depth = self._keep(ctx.depth_renderbuffer(shape, samples=self.msaa))
            self._scene_fbo = self._keep(ctx.framebuffer([color], depth))
            self._resolved_fbo = self._keep(ctx.framebuffer([self._accumulated]))
        else:
            depth = self._keep(ctx.depth_renderbuffer(shape))
            self._scene_fbo = self._keep(ctx.framebuffer([self._accumulated], depth))
        output = self._keep(ctx.renderbuffer(shape, 4))
        self._output_fbo = self._keep(ctx.framebuffer([output]))

    def _build_draws(self) -> list[_Draw]:
        model, cache = self.model, self._textures
        mats = model.materials
        textures = [self._texture(name) for name in mats.texture]
        spheres = [self._texture(name) for name in mats.sphere]
        toons = [self._toon(name, shared) for name, shared in zip(mats.toon, mats.toon_shared)]
        sphere_mode = np.where(np.isin(mats.sphere_mode, (1, 2)), mats.sphere_mode, 0)
        sphere_mode = np.where([s is None for s in spheres], 0, sphere_mode)
        self._maps = MaterialMaps(np.array([t is not None for t in textures]), sphere_mode,
                                  np.array([t is not None for t in toons]))
        flags = mats.flags.astype(np.int64)
        return [_Draw(i, int(mats.index_start[i]), int(mats.index_count[i]),
                      bool(flags[i] & MaterialFlag.DOUBLE_SIDED),
                      bool(flags[i] & MaterialFlag.EDGE) and mats.edge_size[i] > 0,
                      textures[i] or cache.white, spheres[i] or cache.white, toons[i] or cache.white)
                for i in range(len(mats)) if mats.index_count[i] > 0]

    def _texture(self, name: str | None, repeat: bool = True) -> moderngl.Texture | None:
        path = self.model.texture_paths.get(name) if name else None
        return self._textures.get(path, lambda: load_texture(path), repeat) if path else None

    def _toon(self, name: str | None, shared: bool) -> moderngl.Texture | None:
        if not name:
            return None
        if shared:
            return self._textures.get(f"shared:{name}", lambda: shared_toon(name), repeat=False)
        return self._texture(name, repeat=False)


def face_runs(mask: np.ndarray) -> np.ndarray:
    """(K, 2) [first, end) triangle runs where a per-triangle boolean mask is true (``faces=`` of render)."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges.reshape(-1, 2)


def static_vertex_data(model: Model) -> np.ndarray:
    """Interleaved per-vertex data that never changes, SDEF centres precomputed (as Saba does)."""
    v = model.vertices
    data = np.empty(len(v), _STATIC_DTYPE)
    for field, values in zip(_STATIC_DTYPE.names, (v.positions, v.normals, v.uv, v.bone_indices,
                                                   v.bone_weights, v.sdef_c, *_sdef_centres(v),
                                                   v.deform, v.edge_scale)):
        data[field] = values
    return data


def _sdef_centres(v) -> tuple[np.ndarray, np.ndarray]:
    """(C + R0') / 2 and (C + R1') / 2, with R0', R1' shifted so that their weighted mean is C."""
    weight0 = v.bone_weights[:, :1]
    shift = v.sdef_r0 * weight0 + v.sdef_r1 * (1.0 - weight0) - v.sdef_c
    return (v.sdef_c + v.sdef_r0 - shift) / 2, (v.sdef_c + v.sdef_r1 - shift) / 2


def guess_head_bounds(model: Model) -> tuple[float, float]:
    """(top, chin) when none were annotated: the model's top and a fixed fraction below it."""
    low, high = model_bounds(model)
    top = float(high[1])
    return top, top - HEAD_FRACTION_GUESS * float(high[1] - low[1])


def _present(program: moderngl.Program, content: list[tuple]) -> list[tuple]:
    """Vertex-array content with attributes the program optimised out turned into padding."""
    result = []
    for buffer, layout, *names in content:
        formats = [fmt if name in program else f"{int(fmt[:-1]) * 4}x" for fmt, name in zip(layout.split(), names)]
        result.append((buffer, " ".join(formats), *[name for name in names if name in program]))
    return result


def _source(*names: str, defines: Sequence[str] = ()) -> str:
    """GLSL source: version line, defines, then the named files concatenated (GLSL has no #include)."""
    folder = resources.files("renderer") / "shaders"
    lines = ["#version 430", f"#define MMD_LIGHT {MMD_LIGHT:.9f}", *(f"#define {d}" for d in defines)]
    return "\n".join(lines + [(folder / name).read_text(encoding="utf-8") for name in names])


def _release_gpu_objects(objects: list, textures: TextureCache) -> None:
    """What releasing a Renderer frees; holds no reference to the renderer itself."""
    for obj in reversed(objects):
        obj.release()
    objects.clear()
    textures.release()
