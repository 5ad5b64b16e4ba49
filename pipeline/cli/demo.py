"""``mmdsynth demo [OUT]``: a small dataset from the built-in demo character."""
from __future__ import annotations

import click


@click.command()
@click.argument("out", default="demo-dataset", required=False, type=click.Path(file_okay=False))
@click.option("--poses", default=64, show_default=True, type=click.IntRange(min=1), help="Poses to render.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=8), help="Image side in pixels.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Parallel workers [default: 2, or fewer cores].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def command(ctx: click.Context, out: str, poses: int, size: int, jobs: int | None, quiet: bool) -> None:
    """Build a small dataset from the built-in demo character under OUT (default ./demo-dataset).

    Writes the model (OUT/models/demo/), its manifest (OUT/manifest.jsonl), the shards,
    preview.png (random rest / expression / posed triplets) and pose_histograms.png.
    Running it again rebuilds only what changed.
    """
    from pipeline.demo import run_demo

    demo = run_demo(out, poses=poses, size=size, jobs=jobs, progress=not quiet)
    click.echo(demo.summary())
    if demo.report.failed:
        ctx.exit(1)
