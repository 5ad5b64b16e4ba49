"""``mmdsynth info``: what the loader reads from model files."""
from __future__ import annotations

import dataclasses
import json
import sys

import click


@click.command("info")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per model and line: model, vertices, faces, materials, bones, "
                   "morphs, textures_missing, load_seconds.")
@click.pass_context
def command(ctx: click.Context, models: tuple[str, ...], as_json: bool) -> None:
    """Counts of vertices, faces, materials, bones and morphs of each MODEL (.pmx/.pmd).

    Also lists texture files the model names but its folder lacks, and load_seconds,
    the parse alone (no hashing, cache or texture lookup). A model that cannot be read
    gets a one-line error and the others go on; the exit status is then 1.
    """
    from tqdm import tqdm

    from renderer.errors import ModelError
    from renderer.loader import inspect_model

    failed = False
    quiet = len(models) < 8 or not sys.stderr.isatty()  # a bar between error lines of a log is noise
    for path in tqdm(models, desc="info", unit="model", disable=quiet, leave=False):
        try:
            info = inspect_model(path)
        except ModelError as error:
            click.echo(f"error: {error}", err=True)
            failed = True
            continue
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(info), ensure_ascii=False))
        else:
            click.echo(_describe(info))
    if failed:
        ctx.exit(1)


def _describe(info) -> str:
    missing = ", ".join(info.textures_missing) or "none"
    return (f"{info.model}: {info.vertices} vertices, {info.faces} faces, {info.materials} materials, "
            f"{info.bones} bones, {info.morphs} morphs; missing textures: {missing}; "
            f"parsed in {info.load_seconds * 1000:.1f} ms")
