"""The GUI's images, rendered by the project's own renderer in one dedicated worker.

An OpenGL context can only be used by the thread it is current on, and
``renderer.context`` keeps one context per process; so every load and GL call runs in a
child process (its own context, whoever else in the parent uses OpenGL: a test suite,
another app), driven by ONE dispatcher thread that serves jobs by priority. A model
that crashes the driver takes down only the child, which is restarted on the next
call. The child keeps the last ``max_models`` models and their Renderers (LRU) and
releases the rest, so memory stays flat over thousands of models.

Images: the front orthographic full-body view (with its pixel <-> model mapping), the
dataset's head framing for given head bounds, per morph a face close-up and per material
a view of that material alone; and the suggested layer of every material.

The renderers see the model with every morph renamed to its file index (``indexed``):
``Renderer.render(extra_morphs=...)`` addresses morphs by name and names repeat (gumi's
普通 twice), so close-ups ask for ``{"#12": 1.0}``, which means morph 12 and nothing else.
"""
from __future__ import annotations

import io
import itertools
import multiprocessing
import queue
import signal
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from renderer.errors import ModelError
from renderer.model import Model

FRONT_SIZE = 768  # the full-body view: a 7-head character's head gets ~100 rows
PREVIEW_SIZE = 256  # DESIGN.md's framing, exactly as the dataset renders it; close-ups share it
CLOSE_UP_CENTRE = 0.42  # close-ups centre this fraction of the head height above the chin (eyes..mouth)
CLOSE_UP_HALF = 0.42  # ...and show this many head heights above and below it
MATERIAL_MARGIN = 1.15  # a material's view shows its bounds and this much around them
MATERIAL_MIN_HALF = 0.02  # ...and at least this fraction of the model's height (a tiny part is not a blur)
PANEL_ORDER = {2: 0, 3: 1, 1: 2, 4: 3, 0: 4}  # eye, mouth, eyebrow, other, system
URGENT, BACKGROUND = 0, 1  # what a person waits for (views, framing) runs before close-ups

T = TypeVar("T")


@dataclass(frozen=True)
class FrontMapping:
    """Where the front view's pixels lie in model space: row 0's top edge is ``y_top``."""

    size: int
    x_left: float
    x_right: float
    y_top: float
    y_bottom: float
    head_center_x: float

    def to_dict(self) -> dict[str, float]:
        return {"size": self.size, "x_left": self.x_left, "x_right": self.x_right,
                "y_top": self.y_top, "y_bottom": self.y_bottom, "head_center_x": self.head_center_x}


@dataclass(frozen=True)
class MorphInfo:
    index: int
    name: str
    name_en: str
    panel: int
    kind: str


@dataclass(frozen=True)
class ModelInfo:
    """What the page needs to lay out one model before any image arrives."""

    morphs: list[MorphInfo]
    front: FrontMapping
    warnings: list[str]
    materials: list[str]  # material names in file (draw) order


def encode_png(image: np.ndarray) -> bytes:
    """Fast PNG (level 1): the page is local, encoding time matters more than bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def indexed(model: Model) -> Model:
    """The model with morph i renamed "#i" (see the module docstring); shares every array."""
    return replace(model, morphs=[replace(morph, name=morph_key(i)) for i, morph in enumerate(model.morphs)])


def morph_key(index: int) -> str:
    """The name morph ``index`` has in an ``indexed`` model."""
    return f"#{index}"


def ordered_morphs(model: Model) -> list[MorphInfo]:
    """Eye and mouth panels first (where the roles live), then the rest in file order."""
    infos = [MorphInfo(i, m.name, m.name_en, int(m.panel), m.kind.name.lower())
             for i, m in enumerate(model.morphs)]
    return sorted(infos, key=lambda info: (PANEL_ORDER.get(info.panel, 5), info.index))


class RenderThread:
    """One thread that runs jobs by priority, then in order of arrival."""

    def __init__(self, name: str):
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], T], priority: int = URGENT) -> Future:
        future: Future = Future()
        self._jobs.put((priority, next(self._order), future, job))
        return future

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        self._jobs.put((BACKGROUND + 1, next(self._order), None, None))
        self._thread.join()

    def _loop(self) -> None:
        while True:
            _, _, future, job = self._jobs.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as error:  # handed to the waiting request thread
                future.set_exception(error)


class RenderWorker:
    """The child process's side: loaded models and Renderers, all on its main thread."""

    def __init__(self, max_models: int, front_size: int):
        self.max_models, self.front_size = max_models, front_size
        self._models: OrderedDict[str, Model] = OrderedDict()
        self._renderers: OrderedDict[tuple[str, int], object] = OrderedDict()

    def warm(self) -> None:
        """Pay the imports and the context creation before the first model is asked for."""
        from renderer.context import get_context
        from renderer.renderer import Renderer  # noqa: F401

        get_context()

    def info(self, path: str) -> ModelInfo:
        model = self._model(path)
        return ModelInfo(ordered_morphs(model), self._mapping(model), list(model.warnings),
                         list(model.materials.names))

    def suggest(self, path: str, models_root: str):
        """The suggester's record (it renders close-ups, so it runs here, beside the GL context)."""
        from annotator.suggest import suggest

        return suggest(path, models_root)

    def layers(self, path: str, head: tuple[float, float] | None) -> list[dict[str, Any]]:
        """Every material's suggested layer (manifest overrides left out: the page shows those)."""
        from annotator.layers import assign_layers

        return [vars(assignment) for assignment in assign_layers(self._model(path), None, head_bounds=head)]

    def front_view(self, path: str) -> tuple[bytes, FrontMapping]:
        from renderer.framing import full_body_camera

        renderer = self._renderer(path, self.front_size)
        image = renderer.render(None, camera=full_body_camera(renderer.model))
        return encode_png(image), self._mapping(renderer.model)

    def framing(self, path: str, head: tuple[float, float]) -> bytes:
        from renderer.framing import head_camera, head_center_x

        renderer = self._renderer(path, PREVIEW_SIZE)
        try:
            camera = head_camera(*head, head_center_x(renderer.model))
        except ValueError as error:
            raise ModelError(path, str(error)) from None
        return encode_png(renderer.render(None, camera=camera))

    def channels(self, path: str, head: tuple[float, float], roles: dict[str, str | None]) -> bytes:
        """The channel check's close-ups, 2 x 2: rest, eye_left / eye_right, mouth at 1."""
        from annotator.binding import RoleError, bind_roles
        from annotator.channels import close_ups

        model = self._model(path)
        try:
            binding = bind_roles(roles, model=model)
        except RoleError as error:
            raise ModelError(path, str(error)) from None
        rest, left, right, mouth = close_ups(model, head, binding, size=PREVIEW_SIZE).values()
        return encode_png(np.block([[[rest], [left]], [[right], [mouth]]]))

    def close_up(self, path: str, morph: int, head: tuple[float, float] | None) -> bytes:
        from renderer.framing import head_center_x, region_camera
        from renderer.renderer import guess_head_bounds

        renderer = self._renderer(path, PREVIEW_SIZE)
        model = renderer.model
        if not 0 <= morph < len(model.morphs):
            raise ModelError(path, f"has no morph number {morph} (it has {len(model.morphs)})")
        top, chin = head or guess_head_bounds(model)
        centre = (head_center_x(model), chin + CLOSE_UP_CENTRE * (top - chin))
        image = renderer.render(None, extra_morphs={morph_key(morph): 1.0},
                                camera=region_camera(centre, CLOSE_UP_HALF * (top - chin)))
        return encode_png(image)

    def material(self, path: str, index: int) -> bytes:
        """Material ``index`` alone, unposed, framed on its own bounds."""
        from renderer.framing import model_bounds, region_camera

        renderer = self._renderer(path, PREVIEW_SIZE)
        model = renderer.model
        if not 0 <= index < len(model.materials):
            raise ModelError(path, f"has no material number {index} (it has {len(model.materials)})")
        start, count = int(model.materials.index_start[index]), int(model.materials.index_count[index])
        corners = np.asarray(model.indices).reshape(-1)[start:start + count]
        if not len(corners):
            return encode_png(np.zeros((PREVIEW_SIZE, PREVIEW_SIZE, 4), np.uint8))
        points = model.vertices.positions[corners, :2]
        low, high = points.min(axis=0), points.max(axis=0)
        model_low, model_high = model_bounds(model)
        half = max(float(np.max(high - low)) / 2 * MATERIAL_MARGIN,
                   MATERIAL_MIN_HALF * float(model_high[1] - model_low[1]))
        return encode_png(renderer.render(None, materials=[index], camera=region_camera((low + high) / 2, half)))

    def release_all(self) -> None:
        for path in list(self._models):
            self._release_model(path)
        self._models.clear()

    def _model(self, path: str) -> Model:
        model = self._models.get(path)
        if model is None:
            from renderer.loader import load_model

            model = load_model(path)
            self._models[path] = model
            while len(self._models) > self.max_models:
                evicted, _ = self._models.popitem(last=False)
                self._release_model(evicted)
        self._models.move_to_end(path)
        return model

    def _renderer(self, path: str, size: int):
        key = (path, size)
        renderer = self._renderers.get(key)
        if renderer is None:
            from renderer.renderer import Renderer

            renderer = Renderer(indexed(self._model(path)), size=size)
            self._renderers[key] = renderer
        return renderer

    def _release_model(self, path: str) -> None:
        for key in [key for key in self._renderers if key[0] == path]:
            self._renderers.pop(key).release()

    def _mapping(self, model: Model) -> FrontMapping:
        from renderer.framing import full_body_camera, head_center_x

        camera = full_body_camera(model)
        return FrontMapping(self.front_size, camera.center_x - camera.half_height,
                            camera.center_x + camera.half_height, camera.center_y + camera.half_height,
                            camera.center_y - camera.half_height, head_center_x(model))


def serve(connection, max_models: int, front_size: int) -> None:
    """The child's loop: (method, args) in, ("ok", result) / ("model", path, reason) / ("bug", text) out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    worker = RenderWorker(max_models, front_size)
    while True:
        try:
            method, args = connection.recv()
        except EOFError:
            return
        try:
            connection.send(("ok", getattr(worker, method)(*args)))
        except ModelError as error:  # rebuilt in the parent: its __init__ does not unpickle
            connection.send(("model", error.path, error.reason))
        except Exception:  # noqa: BLE001 - a renderer bug: its traceback goes to the parent
            connection.send(("bug", traceback.format_exc()))


class RenderService:
    """The parent's side: one dispatcher thread feeding one render process.

    ``focus(path)`` cancels queued close-ups of other models, so paging quickly through
    models never waits behind images nobody will look at.
    """

    def __init__(self, max_models: int = 2, front_size: int = FRONT_SIZE):
        self.max_models, self.front_size = max_models, front_size
        self._thread = RenderThread("mmdsynth-render")
        self._process: multiprocessing.process.BaseProcess | None = None  # dispatcher thread only
        self._connection = None
        self._queued: dict[Future, str] = {}
        self._lock = threading.Lock()
        self._thread.submit(lambda: self._call("warm"), BACKGROUND)  # nobody waits; errors surface later

    def info(self, path: str) -> Future:
        """Future of the morph list and front mapping (ModelError when the file does not load);
        a future, so that the caller can compute the suggestion meanwhile."""
        return self._submit(path, URGENT, "info", path)

    def front_view(self, path: str) -> tuple[bytes, FrontMapping]:
        """PNG of the front orthographic full-body view and where its pixels lie."""
        return self._run(path, URGENT, "front_view", path)

    def framing(self, path: str, head: tuple[float, float]) -> bytes:
        """PNG of DESIGN.md's 256 x 256 head framing for these (top, chin) bounds."""
        return self._run(path, URGENT, "framing", path, head)

    def close_up(self, path: str, morph: int, head: tuple[float, float] | None) -> bytes:
        """PNG of the face with morph number ``morph`` at full weight, around ``head`` (or a guess)."""
        return self._run(path, BACKGROUND, "close_up", path, morph, head)

    def channels(self, path: str, head: tuple[float, float], roles: dict[str, str | None]) -> bytes:
        """PNG of the channel check, 2 x 2 face close-ups: rest, eye_left / eye_right, mouth at 1."""
        return self._run(path, URGENT, "channels", path, head, roles)

    def suggest(self, path: str, models_root: str):
        """The suggested manifest record of one model (a ``Record``)."""
        return self._run(path, URGENT, "suggest", path, models_root)

    def layers(self, path: str, head: tuple[float, float] | None) -> list[dict[str, Any]]:
        """Every material's suggested layer: {"material", "name", "layer", "decided", "reason"}."""
        return self._run(path, URGENT, "layers", path, head)

    def material(self, path: str, index: int) -> bytes:
        """PNG of material number ``index`` alone, framed on its bounds."""
        return self._run(path, URGENT, "material", path, index)

    def focus(self, path: str | None) -> None:
        """Cancel the queued close-ups of every model but ``path`` (None: of all)."""
        with self._lock:
            others = [future for future, owner in self._queued.items() if owner != path]
        for future in others:  # outside the lock: cancel() runs _forget
            future.cancel()

    def close(self) -> None:
        """Release every GPU object, end the render process and the dispatcher thread."""
        self.focus(None)
        self._thread.submit(self._stop_process, BACKGROUND).result()
        self._thread.stop()

    def _run(self, path: str, priority: int, method: str, *args: Any) -> Any:
        return self._submit(path, priority, method, *args).result()

    def _submit(self, path: str, priority: int, method: str, *args: Any) -> Future:
        future = self._thread.submit(lambda: self._call(method, *args), priority)
        if priority == BACKGROUND:
            with self._lock:
                self._queued[future] = path
            future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._queued.pop(future, None)

    def _call(self, method: str, *args: Any) -> Any:
        """One request to the render process (dispatcher thread only); restarts it after a crash."""
        if self._process is None or not self._process.is_alive():
            self._start_process()
        try:
            self._connection.send((method, args))
            reply = self._connection.recv()
        except (EOFError, OSError):
            self._stop_process()
            raise ModelError(args[0], "the renderer crashed on this model") from None
        if reply[0] == "model":
            raise ModelError(reply[1], reply[2])
        if reply[0] == "bug":
            raise RuntimeError(f"the render process failed:\n{reply[1]}")
        return reply[1]

    def _start_process(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        parent, child = context.Pipe()
        process = context.Process(target=serve, args=(child, self.max_models, self.front_size),
                                  name="mmdsynth-render", daemon=True)
        process.start()
        child.close()
        self._process, self._connection = process, parent

    def _stop_process(self) -> None:
        if self._process is None:
            return
        if self._process.is_alive():
            try:
                self._connection.send(("release_all", ()))
                self._connection.recv()
            except (EOFError, OSError):
                pass
        self._connection.close()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = self._connection = None
