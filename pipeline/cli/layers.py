"""``mmdsynth layers``: Live2D-style layer tools; ``layers import`` is a thin shell over :mod:`pipeline.live2d`."""
from __future__ import annotations

import click


@click.group()
def command() -> None:
    """Live2D-style layer stacks (renders come from `mmdsynth build --layers`)."""


@command.command("import")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Dataset directory to write (shards/, index.json), as a build with --layers writes.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=8), help="Image side in pixels.")
@click.option("--map", "map_file", type=click.Path(exists=True, dir_okay=False),
              help="Layer config (YAML or JSON): `parts` maps part-ID regexes to layers; see annotator/layers.py.")
@click.option("--shard-size", default=1000, show_default=True, type=click.IntRange(min=1), help="Models per shard.")
@click.option("--force", is_flag=True, help="Replace a dataset already in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def import_(ctx: click.Context, src: str, out: str, size: int, map_file: str | None, shard_size: int,
            force: bool, quiet: bool) -> None:
    """Import Live2D layer dumps: SRC holds one folder per model.

    \b
    Full canvas:  NNNN_<partID>.png (draw order NNNN) and all.png, all the canvas size.
    Cropped:      one PNG per drawable and a YAML with canvas: [W, H] and, per drawable,
                  id, part, file, crop_xyxy: [x0, y0, x1, y1], render_order or draw_order.

    Parts map to semantic layers by regexes on their IDs (--map to change them); each
    image is padded to a square around the content and resized to --size. Bad dumps are
    reported and skipped (exit status 1).

    \b
    mmdsynth layers import dumps/ --out data-live2d/ --size 256
    """
    from annotator.layers import load_config
    from pipeline.live2d import import_dumps

    report = import_dumps(src, out, size=size, config=load_config(map_file), shard_size=shard_size,
                          force=force, progress=not quiet)
    click.echo(report.summary())
    if report.skipped:
        ctx.exit(1)
