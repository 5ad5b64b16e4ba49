"""``mmdsynth suggest``: automatic annotation as manifest records."""
from __future__ import annotations

import time
from pathlib import Path

import click

from pipeline.cli import CommandError


@click.command("suggest")
@click.argument("models", nargs=-1, required=True, metavar="MODEL|DIR|GLOB...")
@click.option("--manifest", type=click.Path(dir_okay=False),
              help="Upsert the records into this manifest instead of printing JSON lines.")
@click.option("--models-root", type=click.Path(exists=True, file_okay=False),
              help="Folder that model paths are relative to [default: the manifest's models_root header; "
                   "for a new manifest its folder when the models lie inside it, else the models' common folder].")
@click.option("--group", help="Group of every record [default: the model's source in an ingested folder, "
                              "else its first folder under the root].")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (each renders its own close-ups; about 1 s of rendering per model).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
def command(models: tuple[str, ...], manifest: str | None, models_root: str | None, group: str | None,
            jobs: int, quiet: bool) -> None:
    """Suggest head bounds and morph roles for model files, as manifest records.

    Takes model files, folders (searched recursively) and quoted glob patterns
    ('models/**/*.pmx' needs no globstar). Files that fail to load or are not characters
    become "rejected" records with the reason. Annotated records in the manifest are
    never overwritten by suggestions. A new manifest records its models root, so later
    commands find the models without --models-root.
    """
    from manifests.record import ManifestError
    from manifests.store import root_for_inputs, upsert_records
    from pipeline.progress import bar, summary_table
    from renderer.files import expand_inputs

    files = expand_inputs(models)
    anchors = [Path(name) for name in models if Path(name).is_dir()] + [path for path in files if not any(
        path.resolve().is_relative_to(Path(name).resolve()) for name in models if Path(name).is_dir())]
    root = root_for_inputs(manifest, models_root, anchors)
    outside = [path for path in files if not path.resolve().is_relative_to(root.path)]
    if outside:
        raise CommandError(f"{outside[0]} is not inside the models root {root.path} ({root.origin}); "
                        f"pass --models-root with a folder that holds every model")
    records, outcomes = [], {name: [] for name in ("ok", "held for review", "rejected", "failed")}
    start = time.perf_counter()
    with bar(len(files), "suggest", "model", enabled=not quiet) as progress:
        for path, record in zip(files, _suggestions(files, root.path, group, jobs)):
            if isinstance(record, str):  # one odd file must not end a run over thousands
                outcomes["failed"].append(f"{path}: {record}")
                progress.update()
                continue
            records.append(record)
            outcomes[_outcome(record)].append(_reason(record))
            if manifest is None:
                click.echo(record.to_json())
            progress.update()
    if manifest is not None:
        try:
            upsert_records(manifest, records, root=root.path)
        except ManifestError as error:
            raise CommandError(str(error)) from None
    if not quiet:
        seconds = time.perf_counter() - start
        click.echo(f"{summary_table(outcomes)}\n{len(files)} models in {seconds:.1f} s "
                   f"({len(files) / max(seconds, 1e-9):.1f} models/s); models root {root.path}", err=True)


def _suggestions(files: list[Path], root: Path, group: str | None, jobs: int):
    """Records in the order of ``files`` (a str where the suggester itself failed), on ``jobs`` processes.

    Worker processes are spawned (loky), never forked: each makes its own OpenGL context.
    """
    if jobs == 1:
        return map(lambda path: _suggest_one(path, root, group), files)
    from joblib import Parallel, delayed

    return Parallel(n_jobs=jobs, backend="loky", return_as="generator")(
        delayed(_suggest_one)(path, root, group) for path in files)


def _suggest_one(path: Path, root: Path, group: str | None):
    from annotator.suggest import suggest

    try:
        return suggest(path, root, group)
    except Exception as error:  # noqa: BLE001 - reported in the summary, the run goes on
        return f"{type(error).__name__}: {error}"


def _outcome(record) -> str:
    return {"ok": "ok", "review": "held for review"}.get(record.status, "rejected")


def _reason(record) -> str | None:
    """Why a record is rejected or held for review (its first reason); None for one that ships."""
    if record.status == "review":
        return record.review[0] if record.review else "held for review"
    return record.reject_reason if record.status != "ok" else None
