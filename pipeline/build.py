"""The batch job: a manifest and N poses -> sharded HDF5, in parallel, resumable, failure-isolated.

One task renders one whole shard (its own Renderer per model, its own file), so workers
never share anything but the read-only model files; joblib runs the tasks on local
processes (loky) or, through its Dask backend, on a cluster. A task commits its renders
in small pieces (``pipeline.pieces``) and assembles the shard from them, so a crash loses
seconds, not a shard; the parent counts the pieces for the progress bar. The parent
alone writes ``index.json``, after each finished shard. A rerun with the same config
skips shards that are complete, keeps committed pieces and renders the rest; a
different config refuses unless forced.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.binding import Binding, bind_roles
from manifests.schema import DEFAULT_SCHEMA, PoseSchema, load_schema
from pipeline import pieces, shards
from pipeline.plan import DEFAULT_SHARD_SIZE, ModelSlice, Plan, ShardPlan, make_plan
from pipeline.progress import ShardProgress
from pipeline.sampling import expression_poses, rest_pose, sample_poses
from pipeline.sheets import HISTOGRAMS_NAME, LAYERS_NAME, PREVIEW_NAME
from pipeline.splits import DEFAULT_FRACTIONS
from renderer.errors import UserError

BACKENDS = ("loky", "dask")
FRAMINGS = ("head", "full-body")  # DESIGN.md's head framing, or the whole model (full-body trainers)
OUTPUTS = (HISTOGRAMS_NAME, PREVIEW_NAME, LAYERS_NAME)  # what a build writes beside the shards


class BuildError(UserError, ValueError):
    """The build cannot start: bad settings, or DIR holds a build with a different config."""


@dataclass(frozen=True)
class RenderSettings:
    """What every shard task needs besides its slice of the plan (picklable, small)."""

    out: str
    models_root: str
    seed: int
    size: int
    config: dict[str, Any]
    layers: bool
    shading: str = "phong"
    layer_config: Any = None  # annotator.layers.LayerConfig of --layer-config; None: the default layers
    framing: str = "head"
    variation: Any = None  # pipeline.variation.Variation of --jitter / --styles; None: plain framing and shading
    pose_schema: PoseSchema | None = None  # None: tha1

    @property
    def schema(self) -> PoseSchema:
        return self.pose_schema or load_schema()


@dataclass
class ShardResult:
    file: str  # relative to the dataset directory
    split: str
    samples: int
    models: int
    failed: list[dict[str, str]]
    seconds: float
    reused: int = 0  # images taken from pieces an interrupted run had committed

    @property
    def images(self) -> int:
        return 2 * self.samples + self.models


@dataclass
class BuildReport:
    out: Path
    written: list[ShardResult] = field(default_factory=list)
    skipped: int = 0  # shards already complete from an earlier run
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)
    models_ok: int = 0
    not_built: dict[str, list[str]] = field(default_factory=dict)  # manifest outcome -> reasons
    empty_splits: list[str] = field(default_factory=list)

    @property
    def images_written(self) -> int:
        return sum(result.images for result in self.written)

    @property
    def images_reused(self) -> int:
        return sum(result.reused for result in self.written)

    @property
    def images_per_second(self) -> float:
        return self.images_written / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        splits = ", ".join(f"{split} {n}" for split, n in self.splits.items()) or "none"
        lines = [f"{self.out}: {len(self.written)} shards written, {self.skipped} already complete; "
                 f"samples per split: {splits}",
                 f"{self.images_written} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s)"
                 + (f", {self.images_reused} of them committed by an interrupted run" if self.images_reused else "")]
        lines += [f"failed: {entry['model']}: {entry['reason']}" for entry in self.failed]
        return "\n".join(lines + [self.table(), *self.warnings()])

    def table(self) -> str:
        """Models per outcome: built, held for review (unlabeled), rejected, failed, with reasons."""
        from pipeline.progress import summary_table

        return summary_table({"ok": [None] * self.models_ok, **self.not_built,
                              "failed": list({entry["model"]: entry["reason"] for entry in self.failed}.values())})

    def warnings(self) -> list[str]:
        return [f"warning: split {split!r} is empty: the manifest has too few groups for its fraction; "
                f"give some records \"split\": \"{split}\" (a whole group) or more groups"
                for split in self.empty_splits]


def build_config(plan: Plan, *, poses: int | None, poses_per_model: int | None, seed: int, size: int,
                 layers: bool, shard_size: int, fractions: dict[str, float], shading: str = "phong",
                 layer_config: Any = None, framing: str = "head", variation: Any = None,
                 pose_schema: PoseSchema | None = None) -> dict[str, Any]:
    """Everything that alters the output; a resumed build must match it exactly (the GPUs do not)."""
    schema = pose_schema or load_schema()
    return {"records_sha256": plan.records_hash, "poses": poses, "poses_per_model": poses_per_model,
            "seed": seed, "size": size, "layers": layers, "shard_size": shard_size,
            "fractions": dict(fractions), "shading": shading, "framing": framing,
            "layer_config": layer_config_sha256(layer_config), "pose_schema": schema.name,
            "pose_schema_sha256": hashlib.sha256(schema.to_json().encode("utf-8")).hexdigest(),
            "jitter": bool(variation and variation.jitter),
            "styles": list(variation.styles) if variation and len(variation.styles) > 1 else None,
            "generator_version": shards.generator_version(), "format_version": shards.FORMAT_VERSION}


def layer_config_sha256(config: Any) -> str | None:
    """A fingerprint of a layer config's content (None for the default): renaming the file is no change."""
    from annotator.layers import DEFAULT

    if config is None or config == DEFAULT:
        return None
    text = json.dumps(dataclasses.asdict(config), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stopping_cleanly(function: Callable[..., BuildReport]) -> Callable[..., BuildReport]:
    """However a build stops early (an error, Ctrl-C, SIGTERM, a full disk) it leaves no
    temporary shard behind, and a full disk is one ``DiskFullError`` line, not a traceback."""

    @functools.wraps(function)
    def wrapper(manifest: str | os.PathLike, out: str | os.PathLike, *args: Any, **kwargs: Any) -> BuildReport:
        try:
            return function(manifest, out, *args, **kwargs)
        except BaseException as error:
            _remove_temporary(Path(out))
            if shards.disk_full(error):
                raise shards.DiskFullError(f"{out}: no space left on the device; free some and rerun the "
                                           f"same command to resume") from None
            raise

    return wrapper


@stopping_cleanly
def build(manifest: str | os.PathLike, out: str | os.PathLike, poses: int | None = None, *,
          poses_per_model: int | None = None, jobs: int = 1, backend: str = "loky",
          scheduler: Any = None, seed: int = 0, size: int | None = None, layers: bool = False,
          shard_size: int = DEFAULT_SHARD_SIZE, fractions: dict[str, float] = DEFAULT_FRACTIONS,
          models_root: str | os.PathLike | None = None, force: bool = False, progress: bool = True,
          sheets: bool = True, shading: str = "phong", gpus: Sequence[int] = (),
          layer_config: str | os.PathLike | None = None, framing: str = "head", jitter: bool = False,
          styles: Sequence[str] | None = None, pose_schema: str | os.PathLike = DEFAULT_SCHEMA) -> BuildReport:
    """Build (or resume) the dataset in ``out``; see the module docstring and DESIGN.md.

    ``pose_schema`` is a preset (tha1, tha3) or a schema file (manifests.schema); ``size``
    defaults to the schema's framing size.

    ``shading`` is the renderer's (phong or toon); ``gpus`` are EGL device indices, the
    k-th shard task rendering on ``gpus[k % len(gpus)]`` (empty: the default device);
    ``layer_config`` a YAML/JSON layer configuration file (annotator.layers) for ``layers``;
    ``framing`` "head" (DESIGN.md) or "full-body"; ``models_root`` overrides the manifest's;
    ``jitter`` and ``styles`` vary framing and shading per sample (pipeline.variation;
    ``styles`` replaces ``shading``).
    """
    from manifests.store import read_manifest

    start = time.perf_counter()
    schema = _schema(pose_schema)
    size = schema.framing.size if size is None else size
    _check_settings(jobs, backend, size, layers, shading, gpus)
    if framing not in FRAMINGS:
        raise BuildError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")
    layer_settings = _layer_config(layer_config, layers)
    variation = _variation(jitter, styles, shading)
    manifest = Path(manifest)
    out = Path(out)
    records = read_manifest(manifest)
    plan = make_plan(records, poses=poses, poses_per_model=poses_per_model,
                     shard_size=shard_size, seed=seed, fractions=fractions)
    root = _find_models(manifest, models_root, plan)
    config = build_config(plan, poses=poses, poses_per_model=poses_per_model, seed=seed, size=size,
                          layers=layers, shard_size=shard_size, fractions=fractions, shading=shading,
                          layer_config=layer_settings, framing=framing, variation=variation, pose_schema=schema)
    index = _start_index(out, config, force)
    done, todo = _resume(out, plan, config, index)
    report = BuildReport(out=out, skipped=len(done), not_built=_not_built(records),
                         empty_splits=[split for split, fraction in fractions.items()
                                       if fraction > 0 and split not in plan.splits])
    settings = RenderSettings(out=str(out), models_root=str(root), seed=seed, size=size, config=config,
                              layers=layers, shading=shading, layer_config=layer_settings, framing=framing,
                              variation=variation, pose_schema=schema)
    planned = {_relative(out, shard): 2 * shard.samples + len(shard.slices) for shard in plan.shards}
    _write_index(out, config, done)  # the config is on disk before the first shard
    with ShardProgress(out, planned, [result.file for result in done], progress) as bar:
        for result in _run_surviving(todo, settings, jobs, backend, scheduler, tuple(gpus)):
            report.written.append(result)
            done.append(result)
            _write_index(out, config, done)
            bar.finished(result.file)
    report.failed = [entry for result in done for entry in result.failed]
    report.models_ok = plan.models - len({entry["model"] for entry in report.failed})
    report.splits = split_counts(done)
    report.seconds = time.perf_counter() - start
    if sheets:
        _write_sheets(out)
    return report


def _schema(name_or_path: str | os.PathLike) -> PoseSchema:
    from manifests.schema import SchemaError

    try:
        return load_schema(name_or_path)
    except SchemaError as error:
        raise BuildError(f"--pose-schema: {error}") from None


def _find_models(manifest: Path, override: str | os.PathLike | None, plan: Plan) -> Path:
    """The models root; a BuildError naming the folder tried, and how it was chosen, when none of
    the plan's models is there (a wrong root, not broken models)."""
    from manifests.store import models_root

    root = models_root(manifest, override)
    names = sorted({piece.model for shard in plan.shards for piece in shard.slices})
    if names and not any((root.path / name).is_file() for name in names):
        raise BuildError(f"none of the {len(names)} models of {manifest} is under {root.path} (chosen by "
                         f"{root.origin}; e.g. {root.path / names[0]} is missing): pass --models-root with "
                         f"the folder the manifest's model paths are relative to")
    return root.path


def _not_built(records: Sequence[Any]) -> dict[str, list[str]]:
    """The manifest's records a build leaves out: held for a person (review, unlabeled) or rejected, and why."""
    return {"held for review": [(r.review or ["not labeled yet"])[0] for r in records
                                if r.status in ("review", "unlabeled")],
            "rejected": [r.reject_reason or "rejected" for r in records if r.status == "rejected"]}


def _check_settings(jobs: int, backend: str, size: int, layers: bool, shading: str, gpus: Sequence[int]) -> None:
    from renderer.renderer import SHADINGS

    if backend not in BACKENDS:
        raise BuildError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if shading not in SHADINGS:
        raise BuildError(f"unknown shading {shading!r}; choose one of {', '.join(SHADINGS)}")
    if any(gpu < 0 for gpu in gpus):
        raise BuildError(f"--gpu takes EGL device indices (0, 1, ...), got {', '.join(map(str, gpus))}")
    if jobs < 1 and jobs != -1:
        raise BuildError(f"--jobs must be a positive number (or -1 for all cores), got {jobs}")
    if size < 8:
        raise BuildError(f"--size must be at least 8 pixels, got {size}")
    if layers:
        layer_module()


def layer_module() -> Any:
    """The hook for ``--layers``: ``pipeline.layers`` renders per-part stacks when it exists.

    It must provide ``render_layers(renderer, model, overrides, poses, config, full) -> (N, L, H, W, 4)
    uint8``, L being the layers of ``config`` (an annotator.layers.LayerConfig; None: the default) and
    ``full`` the full renders of ``poses`` that the layers must composite to.
    """
    try:
        return importlib.import_module("pipeline.layers")
    except ModuleNotFoundError as error:
        if error.name != "pipeline.layers":
            raise
        raise BuildError("--layers needs the pipeline.layers module, which this installation lacks") from None


def _layer_config(path: str | os.PathLike | None, layers: bool) -> Any:
    """The --layer-config file's LayerConfig (None without one); a bad file is a BuildError naming it."""
    if path is None:
        return None
    if not layers:
        raise BuildError(f"--layer-config {path} needs --layers (it configures the layer stacks)")
    from annotator.layers import LayerConfigError, load_config

    try:
        return load_config(path)
    except LayerConfigError as error:
        raise BuildError(str(error)) from None


def _variation(jitter: bool, styles: Sequence[str] | None, shading: str) -> Any:
    """The Variation of --jitter / --styles (None when neither varies anything); bad styles are a BuildError."""
    from pipeline.variation import Variation, VariationError

    try:
        variation = Variation(jitter=jitter, styles=tuple(styles) if styles else (shading,))
    except VariationError as error:
        raise BuildError(str(error)) from None
    return variation if variation.varied else None


# ---- resuming -------------------------------------------------------------------------

def _start_index(out: Path, config: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """The earlier build's index when it may be resumed; refuse (or, forced, wipe) a different one."""
    if not (out / shards.INDEX_NAME).exists():
        return None
    try:
        index = shards.read_index(out)
    except shards.DatasetError:
        if not force:
            raise BuildError(f"{out}: holds an unreadable index.json; use --force to start over") from None
        index = {"config": None}
    if index.get("config") == config:
        return index
    if not force:
        raise BuildError(f"{out}: already holds a build with a different config "
                         f"({_config_changes(index.get('config') or {}, config)}); use --force to start over")
    _wipe(out)
    return None


def _config_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new), key=lambda key: (key not in new, key))
    return ", ".join(f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in keys
                     if old.get(key) != new.get(key))


def _wipe(out: Path) -> None:
    """Remove what a build writes (and only that)."""
    shard_dir = out / shards.SHARDS_DIR
    for path in [*shard_dir.glob("*.h5"), *shard_dir.glob(".*.h5.tmp")]:
        path.unlink()
    for path in shard_dir.glob(".*.h5.parts"):
        shutil.rmtree(path)
    for name in (shards.INDEX_NAME, *OUTPUTS):
        (out / name).unlink(missing_ok=True)


def _relative(out: Path, shard: ShardPlan) -> str:
    return shards.shard_path(out, shard.split, shard.number).relative_to(out).as_posix()


def _resume(out: Path, plan: Plan, config: dict[str, Any],
            index: dict[str, Any] | None) -> tuple[list[ShardResult], list[ShardPlan]]:
    """Split the plan into shards already complete (as results) and shards to render."""
    _remove_temporary(out)
    seconds = {entry["file"]: entry.get("seconds", 0.0) for entry in (index or {}).get("shards", [])}
    done: list[ShardResult] = []
    todo: list[ShardPlan] = []
    for shard in plan.shards:
        result = _complete(out, shard, config, seconds)
        if result is None:
            todo.append(shard)
        else:
            shutil.rmtree(pieces.parts_dir(out / result.file), ignore_errors=True)  # left by a crash after the rename
            done.append(result)
    return done, todo


def _complete(out: Path, shard: ShardPlan, config: dict[str, Any], seconds: dict[str, float]) -> ShardResult | None:
    """The shard's result when its file is present, readable, of this config and has every model.

    A shard that lost a model to a failure is redone, so a rerun retries failed models.
    """
    name = _relative(out, shard)
    try:
        with shards.open_shard(out / name) as f:
            if f.attrs.get("config") != shards.config_text(config):
                return None
            present = list(f["models/name"].asstr()[:])
            samples = len(f["sample_id"])
    except (shards.DatasetError, OSError, KeyError):
        return None
    if present != [piece.model for piece in shard.slices] or samples != shard.samples:
        return None
    return ShardResult(file=name, split=shard.split, samples=samples, models=len(present), failed=[],
                       seconds=float(seconds.get(name, 0.0)))


def _remove_temporary(out: Path) -> None:
    """Shards being written and notes of models being rendered, left by a build that stopped."""
    for pattern in (".*.h5.tmp", ".*.h5.model", ".*.h5.parts/.*.tmp"):
        for stale in (out / shards.SHARDS_DIR).glob(pattern):
            stale.unlink(missing_ok=True)


def split_counts(results: list[ShardResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in sorted(results, key=lambda result: result.file):
        counts[result.split] = counts.get(result.split, 0) + result.samples
    return counts


def _write_index(out: Path, config: dict[str, Any], results: list[ShardResult]) -> None:
    ordered = sorted(results, key=lambda result: result.file)
    shards.write_index(out, {
        "format_version": shards.FORMAT_VERSION, "generator_version": shards.generator_version(),
        "config": config, "splits": split_counts(ordered),
        "shards": [{"file": r.file, "split": r.split, "samples": r.samples, "models": r.models,
                    "seconds": round(r.seconds, 3)} for r in ordered],
        "failed": [entry for result in ordered for entry in result.failed]})


# ---- running --------------------------------------------------------------------------

def _run(todo: list[ShardPlan], settings: RenderSettings, jobs: int, backend: str,
         scheduler: Any, gpus: tuple[int, ...], separate: bool = False) -> Iterator[ShardResult]:
    """Shard results in completion order, from local processes or a Dask cluster.

    One job runs in this process unless ``separate`` (a worker's death is then survivable).

    A worker that cannot make an OpenGL context on its device stops the build: every
    other shard would fail the same way.
    """
    from joblib import Parallel, delayed, parallel_config

    from renderer.context import ContextError

    if not todo:
        return
    tasks = (delayed(render_shard)(shard, settings, gpus[k % len(gpus)] if gpus else None)
             for k, shard in enumerate(todo))
    with ExitStack() as stack:
        if backend == "dask":
            stack.enter_context(_dask_client(scheduler, jobs))
            stack.enter_context(parallel_config(backend="dask"))
            n_jobs = -1
        else:
            n_jobs = max(min(jobs if jobs > 0 else os.cpu_count() or 1, len(todo)), 2 if separate else 1)
        try:
            yield from Parallel(n_jobs=n_jobs, batch_size=1, return_as="generator_unordered")(tasks)
        except ContextError as error:
            raise BuildError(str(error)) from None


def _run_surviving(todo: list[ShardPlan], settings: RenderSettings, jobs: int, backend: str,
                   scheduler: Any, gpus: tuple[int, ...]) -> Iterator[ShardResult]:
    """:func:`_run`, going on when a worker dies (a segfault, the OOM killer).

    Which of the shards in flight killed it is unknown, so the unfinished shards then run
    one at a time; there a worker's death is pinned on the model it was rendering (the
    note render_shard leaves), which is marked failed, and the shard is rendered again
    without it. So each shard is retried once before a model of it is given up.
    """
    out = Path(settings.out)
    pending = list(todo)
    try:
        for result in _run(pending, settings, jobs, backend, scheduler, gpus):
            pending = [shard for shard in pending if _relative(out, shard) != result.file]
            yield result
        return
    except Exception as error:
        if not _worker_died(error):
            raise
    for shard in pending:
        yield _render_alone(shard, settings, backend, scheduler, gpus)


def _render_alone(shard: ShardPlan, settings: RenderSettings, backend: str, scheduler: Any,
                  gpus: tuple[int, ...]) -> ShardResult:
    """One shard in one worker; each model its worker dies on is left out and reported."""
    dropped: list[dict[str, str]] = []
    while True:
        left = dataclasses.replace(shard, slices=tuple(piece for piece in shard.slices
                                                       if piece.model not in {d["model"] for d in dropped}))
        try:
            (result,) = _run([left], settings, 1, backend, scheduler, gpus, separate=True)
        except Exception as error:
            model = _noted_model(Path(settings.out), shard) if _worker_died(error) else None
            if model is None:
                raise
            dropped.append({"model": model, "reason": f"the worker rendering it died, twice ({_death(error)})",
                            "shard": _relative(Path(settings.out), shard)})
            continue
        result.failed[:0] = dropped
        return result


def _worker_died(error: BaseException) -> bool:
    """A worker process ended mid-task: loky's TerminatedWorkerError, Dask's KilledWorker
    (matched by name: distributed is imported only with the Dask backend)."""
    return type(error).__name__ in ("TerminatedWorkerError", "KilledWorker")


def _death(error: BaseException) -> str:
    """How a worker died, in a few words (loky's message spans lines and gives advice)."""
    codes = re.search(r"exit codes? of the workers? (?:is|are) (\{[^}]*\})", str(error))
    return f"exit code {codes.group(1)}" if codes else type(error).__name__


def _note_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.model")


def _leave_note(path: Path, model: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _note_path(path).write_text(model, encoding="utf-8")


def _noted_model(out: Path, shard: ShardPlan) -> str | None:
    """The model a dead worker was rendering in ``shard`` (None when it left no note)."""
    note = _note_path(out / _relative(out, shard))
    try:
        return note.read_text(encoding="utf-8") or None
    except FileNotFoundError:
        return None
    finally:
        note.unlink(missing_ok=True)


@contextmanager
def _dask_client(scheduler: Any, jobs: int) -> Iterator[Any]:
    """A client of the given scheduler (address, cluster or client), or of a local cluster."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None and hasattr(scheduler, "submit"):  # already a Client
        yield scheduler
        return
    with ExitStack() as stack:
        if scheduler is None:
            workers = jobs if jobs > 0 else os.cpu_count() or 1
            scheduler = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1,
                                                         dashboard_address=None))
        try:
            client = stack.enter_context(Client(scheduler, timeout=30))
        except OSError as error:
            raise BuildError(f"cannot reach the Dask scheduler {scheduler}: {error}") from None
        yield client


# ---- one shard (runs in a worker) -------------------------------------------------------

def render_shard(shard: ShardPlan, settings: RenderSettings, gpu: int | None = None) -> ShardResult:
    """Render one shard into its file on EGL device ``gpu``, committing pieces as it goes (a resumed
    shard keeps those of an earlier run); a model that fails is recorded and left out.

    No OpenGL context on that device (ContextError) is no fault of a model: it propagates.
    """
    from annotator.layers import DEFAULT
    from renderer.context import ContextError

    start = time.perf_counter()
    out = Path(settings.out)
    layers = layer_module() if settings.layers else None
    name = _relative(out, shard)
    layer_config = settings.layer_config or DEFAULT
    work = pieces.ShardWork(out / name, size=settings.size, split=shard.split, config=settings.config,
                            layers=list(layer_config.names) if layers else None, taxonomy=layer_config.preset,
                            styles=list(settings.variation.styles) if settings.variation else None,
                            schema=settings.schema)
    failed: list[dict[str, str]] = []
    built: list[list[pieces.Piece]] = []
    reused = 0
    for position, piece in enumerate(shard.slices):
        planned = pieces.slice_pieces(position, piece.count)
        missing = work.missing(planned)
        _leave_note(out / name, piece.model)  # who to blame if this worker dies
        try:
            _render_slice(work, missing, piece, settings, layers, gpu)
        except Exception as error:  # failure isolation: any model may be broken in its own way
            if isinstance(error, ContextError) or shards.disk_full(error):
                raise  # no fault of the model: every other shard would fail the same way
            failed.append({"model": piece.model, "reason": _reason(error), "shard": name})
            continue
        built.append(planned)
        reused += sum(part.images for part in planned if part not in missing)
    samples, models = work.assemble(built)
    _note_path(out / name).unlink(missing_ok=True)
    return ShardResult(file=name, split=shard.split, samples=samples, models=models, failed=failed,
                       seconds=time.perf_counter() - start, reused=reused)


def _reason(error: Exception) -> str:
    from renderer.errors import ModelError

    text = error.reason if isinstance(error, ModelError) else str(error)
    return text if isinstance(error, (ModelError, ValueError)) else f"{type(error).__name__}: {text}"


def _render_slice(work: pieces.ShardWork, todo: list[pieces.Piece], piece: ModelSlice,
                  settings: RenderSettings, layers: Any, gpu: int | None) -> None:
    """The ``todo`` pieces of one model slice, each committed as soon as it is rendered."""
    from pipeline.variation import StyleRenderers, Variation, render_varied
    from renderer.framing import full_body_camera
    from renderer.loader import load_model

    if not todo:
        return
    path = Path(settings.models_root) / piece.model
    if not path.is_file():
        raise ValueError(f"not found at {path} (is the models root {settings.models_root} right?)")
    model = load_model(path)
    if piece.sha256 and model.sha256 and piece.sha256 != model.sha256:
        raise ValueError(f"the file changed since it was annotated (sha256 {model.sha256[:12]}, "
                         f"manifest {piece.sha256[:12]})")
    schema = settings.schema
    binding = checked(piece.morphs, model, piece.head, schema)
    mask = binding.mask(schema)
    poses = sample_poses(settings.seed, piece.key, np.arange(piece.start, piece.start + piece.count), schema, mask)
    rest_values = rest_pose(schema)
    variation = settings.variation or Variation(styles=(settings.shading,))
    camera = full_body_camera(model) if settings.framing == "full-body" else None
    options = dict(head_bounds=piece.head, drivers=binding.drivers, size=settings.size, gpu=gpu,
                   framing=(schema.framing.head_height, schema.framing.head_centre))
    with StyleRenderers(model, options, variation.styles[0], camera) as renderers:
        renderer = renderers.first
        stack = (lambda r, p, full, camera=None: layers.render_layers(
            r, model, piece.layers, p, settings.layer_config, full, camera)) if layers else None
        for part in todo:
            batch = poses[part.start:part.start + part.count]
            expression = expression_poses(batch, schema)
            with work.piece(part) as writer:
                if part.start == 0:
                    rest = renderer.render(rest_values)
                    writer.add_model(0, piece.model, model.sha256 or piece.key, binding.to_json(), rest,
                                     stack(renderer, rest_values[None], rest[None])[0] if stack else None)
                if not part.count:
                    continue
                ids = np.arange(piece.first_id + part.start, piece.first_id + part.start + part.count)
                if settings.variation is None:
                    images = renderer.render_batch(expression), renderer.render_batch(batch)
                    stacks = ((stack(renderer, expression, images[0]), stack(renderer, batch, images[1]))
                              if stack else None)
                else:
                    indices = np.arange(piece.start + part.start, piece.start + part.start + part.count)
                    images, stacks, jitter, styles = render_varied(renderers, variation, settings.seed, piece.key,
                                                                   indices, expression, batch, stack)
                    writer.add_variation(0, jitter, styles)
                writer.add_samples(0, batch, np.zeros(part.count), ids, *images, *(stacks or (None, None)),
                                   np.tile(mask, (part.count, 1)))

class ChannelCheckError(ValueError):
    """A model's pose channels do not do what their labels say: it is not shipped."""


def checked(roles: dict[str, str | None], model: Any, head: tuple[float, float], schema: PoseSchema) -> Binding:
    """The model's binding with its passing channel check attached; ChannelCheckError when it fails.
    Roles found by name whose morph does not do what they mean are left undriven (masked).

    The check renders its own close-ups at a fixed size, whatever the dataset's image size.
    """
    from annotator.channels import check_model

    binding = bind_roles(roles, schema=schema, model=model)
    report = check_model(model, head, binding, schema)
    if not report.ok:
        raise ChannelCheckError("channel check failed: " + "; ".join(report.reasons))
    if report.rejected_roles:
        binding = bind_roles(roles, schema=schema, model=model, rejected=report.rejected_roles)
    return dataclasses.replace(binding, check=report.to_dict())


def _write_sheets(out: Path) -> None:
    from pipeline.sheets import write_histograms, write_layer_preview, write_preview

    write_preview(out)
    write_histograms(out)
    write_layer_preview(out)
