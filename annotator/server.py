"""The labeling GUI's web server: a Flask app over the models folder and the manifest.

Models without a record get an automatic suggestion (``annotator.suggest``), computed in
the background and on demand, kept in memory until a person confirms or rejects it;
each decision is merged into the manifest at once (``upsert_records``: locked, merged
by model, atomic), so a crash loses at most the model being edited and two annotators
can share one manifest. Images come from the project's renderer (``annotator.views``).

Only requests addressed to the hosts it serves (loopback names, or ``--host``) are
answered, so a web page that rebinds its DNS name to 127.0.0.1 gets 403; writes must
be JSON (``Content-Type: application/json``), at most ``MAX_BODY`` bytes, and come from
the GUI's own origin when the browser names one (``Origin``), so another site's page
cannot post decisions.

JSON API (errors are ``{"error": message}`` with status 400, 403, 404, 409, 413 or 415):

``GET /api/models``
    ``{"models": [{"id", "model", "status", "source", "confidence", "pending",
    "reason"}], "progress": {"done", "total"}}``. ``status`` is ok / rejected /
    unlabeled, ``source`` suggested / annotated (done = annotated), ``confidence`` the
    suggestion's lowest confidence (null when unknown), ``pending`` true while the
    suggestion is still being computed. Unconfirmed suggestions come first, least
    confident first; then pending ones; then the models already done.
``GET /api/models/<id>``
    ``{"id", "model", "record", "done", "error", "warnings", "morphs": [{"index",
    "name", "name_en", "panel", "kind"}], "front": {"size", "x_left", "x_right",
    "y_top", "y_bottom", "head_center_x"}, "roles"}``: the saved record, else the
    suggestion; morphs with the eye and mouth panels first; ``error`` is the load
    error (then ``morphs`` is empty and ``front`` null).
``GET /api/models/<id>/front.png``
    The front orthographic full-body view, ``front.size`` pixels square. Row 0's top
    edge is model y ``y_top``, the last row's bottom edge ``y_bottom`` (also sent as
    the headers ``X-Model-Y-Top`` and ``X-Model-Y-Bottom``); y is linear in between.
``GET /api/models/<id>/preview.png?top=Y&bottom=Y``
    The 256 x 256 dataset framing for these head bounds (DESIGN.md).
``GET /api/models/<id>/channels.png?top=Y&bottom=Y[&role=name...]``
    The channel check's face close-ups side by side: rest, eye_left, eye_right and
    mouth at 1, driven by the record's roles (or the roles given), so a person sees
    what each pose channel will show.
``GET /api/models/<id>/morphs/<index>.png[?top=Y&bottom=Y]``
    A face close-up with morph ``index`` (file order; that morph even where names
    repeat) at full weight, around these head bounds (a guess from the model's height
    without them).
``GET /api/models/<id>/layers[?top=Y&bottom=Y]``
    ``{"layers": [name, ...], "materials": [{"material", "name", "layer", "decided",
    "reason"}]}``: the semantic layers in draw order and every material's suggested
    layer (``annotator.layers``; manifest overrides left out, they are in the record),
    ``decided`` by ``name`` or ``geometry``; head bounds as for close-ups.
``GET /api/models/<id>/materials/<index>.png``
    Material ``index`` (file order) alone, unposed, framed on its own bounds.
``POST /api/models/<id>/confirm`` with ``{"head": {"top", "bottom"}, "morphs": {role:
    name or null}, "layers": {material name: layer}}`` (layers optional: the saved ones stay)
    Saves the record as status ok, source annotated. Returns ``{"record", "progress"}``.
``POST /api/models/<id>/reject`` with ``{"reason": text}``
    Saves the record as status rejected with the reason. Returns ``{"record", "progress"}``.
"""
from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request, send_from_directory

from annotator.layers import DEFAULT as LAYER_CONFIG
from annotator.suggest import relative_model_path, suggest
from annotator.views import ModelInfo, RenderService
from manifests.record import HEAD_LIMIT, ROLES, ManifestError, Record
from manifests.store import model_sha256, read_manifest, repeated_models, root_for_inputs, upsert_records
from renderer.errors import ModelError, UserError
from renderer.files import model_files

STATIC = Path(__file__).resolve().parent / "static"
PNG_CACHE = "private, max-age=3600"  # every image is a pure function of its URL
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 64 * 1024  # bytes of a request body: a decision is well under 1 kB
MAX_REASON = 1000  # characters of a reject reason
log = logging.getLogger(__name__)


class SetupError(UserError, ValueError):
    """The models folder, manifest or models root cannot be used; the message says why."""


class ApiError(Exception):
    """A request the API refuses: sent as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Entry:
    """One model file: ``name`` is its manifest name (relative to the models root)."""

    id: int
    path: Path
    name: str


def scan_models(models_dir: Path, models_root: Path) -> list[Entry]:
    """Every .pmx/.pmd below ``models_dir`` (any case), ordered by manifest name."""
    if not models_dir.is_dir():
        raise SetupError(f"{models_dir}: not a folder of models")
    try:
        models_dir.resolve().relative_to(models_root.resolve())
    except ValueError:
        raise SetupError(f"{models_dir}: not inside the models root {models_root} (pass --models-root)") from None
    files = model_files(models_dir)
    if not files:
        raise SetupError(f"{models_dir}: no .pmx or .pmd files in it or below it")
    outside = [path for path in files if not path.resolve().is_relative_to(models_root.resolve())]
    for path in outside:  # a symlink out of the tree: no manifest name, but no reason to stop either
        log.warning("skipping %s: it leads outside the models root %s", path, models_root)
    files = [path for path in files if path not in outside]
    names = sorted((relative_model_path(path, models_root), path) for path in files)
    return [Entry(i, path, name) for i, (name, path) in enumerate(names)]


def lowest_confidence(record: Record) -> float | None:
    return min(record.confidence.values()) if record.confidence else None


class Catalog:
    """The models, their saved records and their suggestions; safe to share between threads."""

    def __init__(self, models_dir: Path, manifest: Path, models_root: Path,
                 suggester: Callable[[Path, Path], Record] = suggest):
        if manifest.is_dir():
            raise SetupError(f"{manifest}: the manifest must be a file, not a folder")
        self.manifest, self.models_root, self._suggester = manifest, models_root, suggester
        self.entries = scan_models(models_dir, models_root)
        self._saved: dict[str, Record] = {}
        self._suggested: dict[str, Record] = {}
        self._mtime: float | None = None
        self.repeated: list[str] = []  # models the manifest lists more than once (repeated_models)
        self._lock = threading.Lock()
        self._suggesting = {entry.name: threading.Lock() for entry in self.entries}
        self.refresh()

    def entry(self, model_id: int) -> Entry:
        if not 0 <= model_id < len(self.entries):
            raise ApiError(404, f"no model number {model_id} (there are {len(self.entries)})")
        return self.entries[model_id]

    def refresh(self) -> None:
        """Re-read the manifest when someone (another annotator too) changed it."""
        mtime = self.manifest.stat().st_mtime_ns if self.manifest.exists() else None
        if mtime != self._mtime:
            found = read_manifest(self.manifest) if mtime else []
            records = {record.model: record for record in found}  # the last line of a model wins
            with self._lock:
                self._saved, self._mtime, self.repeated = records, mtime, repeated_models(found)

    def record(self, entry: Entry) -> Record:
        """The saved record, else the suggestion (computed now if it is not yet)."""
        return self.known(entry) or self.suggestion(entry)

    def basis(self, entry: Entry) -> Record:
        """The record a decision starts from, with the file's hash (a hand-written line may lack it)."""
        record = self.record(entry)
        return record if record.sha256 else replace(record, sha256=model_sha256(entry.path))

    def known(self, entry: Entry) -> Record | None:
        """The saved record or a suggestion already made; never computes."""
        with self._lock:
            return self._saved.get(entry.name) or self._suggested.get(entry.name)

    def is_done(self, entry: Entry) -> bool:
        with self._lock:
            saved = self._saved.get(entry.name)
        return saved is not None and saved.source == "annotated"

    def suggestion(self, entry: Entry) -> Record:
        with self._suggesting[entry.name]:
            known = self.known(entry)
            if known is not None:
                return known
            record = _suggest(entry, self.models_root, self._suggester)
            with self._lock:
                self._suggested[entry.name] = record
            return record

    def save(self, record: Record) -> Record:
        """Merge one decision into the manifest now (locked, atomic)."""
        try:
            written = upsert_records(self.manifest, [record], root=self.models_root)
        except ManifestError as error:
            raise ApiError(400, str(error)) from None
        with self._lock:
            self._saved = {saved.model: saved for saved in written}
            self._mtime = self.manifest.stat().st_mtime_ns
        return record

    def progress(self) -> dict[str, int]:
        return {"done": sum(self.is_done(entry) for entry in self.entries), "total": len(self.entries)}

    def listing(self) -> dict[str, Any]:
        try:
            self.refresh()
        except ManifestError as error:  # someone broke the file: say so, keep what we had
            raise ApiError(409, str(error)) from None
        rows = [self._row(entry) for entry in self.entries]
        rows.sort(key=lambda row: (row["source"] == "annotated", row["pending"], row["status"] != "review",
                                   row["confidence"] if row["confidence"] is not None else 1.0, row["model"]))
        return {"models": rows, "progress": self.progress()}

    def _row(self, entry: Entry) -> dict[str, Any]:
        record = self.known(entry)
        if record is None:
            return {"id": entry.id, "model": entry.name, "status": "unlabeled", "source": "suggested",
                    "confidence": None, "pending": True, "reason": None}
        return {"id": entry.id, "model": entry.name, "status": record.status, "source": record.source,
                "confidence": lowest_confidence(record), "pending": False,
                "reason": record.reject_reason or "; ".join(record.review) or None}

    def suggest_all(self, stop: threading.Event) -> None:
        """Background work: suggestions for every model without one, so the list can sort."""
        for entry in self.entries:
            if stop.is_set():
                return
            if self.known(entry) is None:
                self.suggestion(entry)


def _suggest(entry: Entry, models_root: Path, suggester: Callable[[Path, Path], Record]) -> Record:
    """A suggestion; a crash inside the suggester must not take the GUI down with it."""
    try:
        return suggester(entry.path, models_root)
    except Exception as error:  # noqa: BLE001 - reported on the model's page, logged in full
        log.exception("suggesting %s failed", entry.name)
        return Record(model=entry.name, sha256=model_sha256(entry.path), status="rejected",
                      reject_reason=f"the suggester failed: {error}")


def decided(base: Record, **changes: Any) -> Record:
    """A person's decision built on the record shown: annotated, without guess confidences."""
    record = replace(base, source="annotated", confidence=None, **changes)
    try:
        record.validate(f"record for {record.model}")
    except ManifestError as error:
        raise ApiError(400, error.reason) from None
    return record


def confirmed(base: Record, payload: dict[str, Any], info: ModelInfo | None) -> Record:
    head = payload.get("head")
    if not isinstance(head, dict) or not {"top", "bottom"} <= set(head):
        raise ApiError(400, "confirm needs head bounds {\"top\": y, \"bottom\": y}")
    morphs = payload.get("morphs", base.morphs)
    if not isinstance(morphs, dict):
        raise ApiError(400, f"morphs must map roles to morph names, got {morphs!r}")
    if info is not None:
        names = {morph.name for morph in info.morphs}
        unknown = sorted(name for name in morphs.values() if isinstance(name, str) and name not in names)
        if unknown:
            raise ApiError(400, f"the model has no morph named {unknown[0]!r}")
    return decided(base, status="ok", reject_reason=None,
                   head={"top": head["top"], "bottom": head["bottom"]},
                   morphs={**base.morphs, **morphs},
                   layers=checked_layers(payload.get("layers", base.layers), info))


def checked_layers(layers: Any, info: ModelInfo | None) -> Any:
    """Layer overrides name known layers and (when the model loads) its own materials."""
    if not isinstance(layers, dict):
        raise ApiError(400, f"layers must map material names to layers, got {layers!r}")
    bad = sorted(str(layer) for layer in layers.values() if layer not in LAYER_CONFIG.names)
    if bad:
        raise ApiError(400, f"unknown layer {bad[0]!r}; layers are {', '.join(LAYER_CONFIG.names)}")
    if info is not None:
        missing = sorted(name for name in layers if name not in info.materials)
        if missing:
            raise ApiError(400, f"the model has no material named {missing[0]!r}")
    return layers


class Annotator:
    """Everything one app holds: the catalog, the renderer service, the background suggester."""

    def __init__(self, catalog: Catalog, renders: RenderService):
        self.catalog, self.renders = catalog, renders
        self._stop = threading.Event()
        self._suggester = threading.Thread(target=catalog.suggest_all, args=(self._stop,),
                                           name="mmdsynth-suggest", daemon=True)
        self._suggester.start()

    def info(self, entry: Entry, pending: Future | None = None) -> ModelInfo:
        """The model's morphs and front mapping (from ``pending`` when already asked for)."""
        try:
            return (pending or self.renders.info(str(entry.path))).result()
        except ModelError as error:
            raise ApiError(409, error.reason) from None

    def close(self) -> None:
        self._stop.set()
        self._suggester.join()
        self.renders.close()


def create_app(models_dir: str | os.PathLike, manifest_path: str | os.PathLike,
               models_root: str | os.PathLike | None = None, hosts: Iterable[str] = ()) -> Flask:
    """The GUI over every model below ``models_dir``; decisions go to ``manifest_path``.

    ``models_root`` (default: the manifest's models root; for a new manifest its folder,
    or ``models_dir`` when that lies outside it) is what manifest names are relative to;
    ``hosts`` are host names it answers to besides the loopback ones. Raises SetupError
    for an unusable folder or manifest, ManifestError for a bad manifest line.
    ``app.extensions["mmdsynth"].close()`` stops its threads and render process.
    """
    manifest = Path(manifest_path)
    root = root_for_inputs(manifest, models_root, [models_dir]).path
    renders = RenderService()
    catalog = Catalog(Path(models_dir), manifest, root, lambda path, root: renders.suggest(str(path), str(root)))
    annotator = Annotator(catalog, renders)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["mmdsynth"] = annotator
    _guard(app, {*LOOPBACK_HOSTS, *(host.lower() for host in hosts)})
    _routes(app, annotator)
    return app


def _guard(app: Flask, hosts: set[str]) -> None:
    """Refuse requests for other hosts (DNS rebinding) and writes a browser sends from another origin."""

    @app.before_request
    def check_request():
        if urlsplit(f"//{request.host}").hostname not in hosts:
            raise ApiError(403, f"this server answers only to {', '.join(sorted(hosts))}, "
                                f"not to host {request.host!r}")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin != request.host_url.rstrip("/"):
                raise ApiError(403, f"writes must come from this GUI's page, not from {origin!r}")
            if not request.is_json:
                raise ApiError(415, "writes must be JSON (Content-Type: application/json)")

    @app.errorhandler(413)
    def too_large(error):
        return jsonify(error=f"the request body is larger than {MAX_BODY} bytes"), 413


def _routes(app: Flask, annotator: Annotator) -> None:
    catalog, renders = annotator.catalog, annotator.renders

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return jsonify(error=str(error)), error.status

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html", max_age=0)

    @app.get("/api/models")
    def models():
        return jsonify(catalog.listing())

    @app.get("/api/models/<int:model_id>")
    def model(model_id: int):
        entry = catalog.entry(model_id)
        renders.focus(str(entry.path))
        pending = renders.info(str(entry.path))  # loads in the render process while we suggest
        record = catalog.record(entry)
        try:
            info, error = annotator.info(entry, pending), None
        except ApiError as failure:
            info, error = None, str(failure)
        return jsonify(id=entry.id, model=entry.name, record=record.to_dict(), done=catalog.is_done(entry),
                       error=error, warnings=info.warnings if info else [],
                       morphs=[vars(morph) for morph in info.morphs] if info else [],
                       front=info.front.to_dict() if info else None, roles=list(ROLES))

    @app.get("/api/models/<int:model_id>/front.png")
    def front(model_id: int):
        entry = catalog.entry(model_id)
        png, mapping = _rendered(lambda: renders.front_view(str(entry.path)))
        return _png(png, {"X-Model-Y-Top": repr(mapping.y_top), "X-Model-Y-Bottom": repr(mapping.y_bottom)})

    @app.get("/api/models/<int:model_id>/preview.png")
    def preview(model_id: int):
        entry = catalog.entry(model_id)
        head = _head_query(required=True)
        return _png(_rendered(lambda: renders.framing(str(entry.path), head)))

    @app.get("/api/models/<int:model_id>/channels.png")
    def channels(model_id: int):
        entry = catalog.entry(model_id)
        head = _head_query(required=True)
        roles = dict(catalog.record(entry).morphs)
        roles.update({role: request.args[role] or None for role in ROLES if role in request.args})
        return _png(_rendered(lambda: renders.channels(str(entry.path), head, roles)))

    @app.get("/api/models/<int:model_id>/morphs/<int:index>.png")
    def close_up(model_id: int, index: int):
        entry = catalog.entry(model_id)
        head = _head_query(required=False)
        return _png(_rendered(lambda: renders.close_up(str(entry.path), index, head)))

    @app.get("/api/models/<int:model_id>/layers")
    def layers(model_id: int):
        entry = catalog.entry(model_id)
        head = _head_query(required=False)
        materials = _rendered(lambda: renders.layers(str(entry.path), head))
        return jsonify(layers=list(LAYER_CONFIG.names), materials=materials)

    @app.get("/api/models/<int:model_id>/materials/<int:index>.png")
    def material(model_id: int, index: int):
        entry = catalog.entry(model_id)
        return _png(_rendered(lambda: renders.material(str(entry.path), index)))

    @app.post("/api/models/<int:model_id>/confirm")
    def confirm(model_id: int):
        entry = catalog.entry(model_id)
        try:
            info = annotator.info(entry)
        except ApiError:
            info = None  # a broken file can still be confirmed by hand; names are not checked then
        record = catalog.save(confirmed(catalog.basis(entry), _payload(), info))
        return jsonify(record=record.to_dict(), progress=catalog.progress())

    @app.post("/api/models/<int:model_id>/reject")
    def reject(model_id: int):
        entry = catalog.entry(model_id)
        reason = _payload().get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(400, "reject needs a reason")
        if len(reason) > MAX_REASON:
            raise ApiError(400, f"the reason is longer than {MAX_REASON} characters")
        record = catalog.save(decided(catalog.basis(entry), status="rejected", reject_reason=reason.strip()))
        return jsonify(record=record.to_dict(), progress=catalog.progress())


def _rendered(render: Callable[[], Any]) -> Any:
    try:
        return render()
    except ModelError as error:
        raise ApiError(409, error.reason) from None
    except CancelledError:
        raise ApiError(409, "cancelled: another model is being viewed") from None


def _png(png: bytes, headers: dict[str, str] | None = None) -> Response:
    response = Response(png, mimetype="image/png", headers=headers or {})
    response.headers["Cache-Control"] = PNG_CACHE
    return response


def _payload() -> dict[str, Any]:
    try:
        payload = request.get_json(silent=True)
    except RecursionError:  # json's decoder gives up on deep nesting this way, not with ValueError
        raise ApiError(400, "the request body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return payload


def _head_query(required: bool) -> tuple[float, float] | None:
    top, bottom = request.args.get("top"), request.args.get("bottom")
    if top is None and bottom is None and not required:
        return None
    try:
        head = float(top), float(bottom)
    except (TypeError, ValueError):
        raise ApiError(400, "top and bottom must be numbers (model-space y)") from None
    if not all(math.isfinite(y) and abs(y) <= HEAD_LIMIT for y in head):
        raise ApiError(400, f"top and bottom must be finite, within ±{HEAD_LIMIT:g}")
    if not head[0] > head[1]:
        raise ApiError(400, f"head top {head[0]} must lie above the chin {head[1]}")
    return head
