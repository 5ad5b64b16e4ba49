"""``mmdsynth suggest``: automatic annotation as manifest records."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import UserError, register_user_error


@click.command("suggest")
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--manifest", type=click.Path(dir_okay=False),
              help="Upsert the records into this manifest instead of printing JSON lines.")
@click.option("--models-root", type=click.Path(exists=True, file_okay=False),
              help="Folder that model paths are relative to [default: the manifest's folder, "
                   "or the current directory when printing].")
@click.option("--group", help="Group of every record [default: the model's first folder under the root].")
def command(models: tuple[str, ...], manifest: str | None, models_root: str | None, group: str | None) -> None:
    """Suggest head bounds and morph roles for MODEL files, as manifest records.

    Files that fail to load or are not characters become "rejected" records with the
    reason. Annotated records in the manifest are never overwritten by suggestions.
    """
    from tqdm import tqdm

    from annotator.suggest import suggest
    from manifests.record import ManifestError
    from manifests.store import default_models_root, upsert_records

    register_user_error(ManifestError)
    root = Path(models_root) if models_root else default_models_root(manifest) if manifest else Path.cwd()
    records = []
    for path in tqdm(models, desc="suggest", unit="model", disable=len(models) < 4, leave=False):
        record = suggest(path, root, group)
        records.append(record)
        if manifest is None:
            click.echo(record.to_json())
    if manifest is not None:
        try:
            upsert_records(manifest, records)
        except ManifestError as error:
            raise UserError(str(error)) from None
