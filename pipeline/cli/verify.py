"""``mmdsynth verify DIR``: integrity check of a built dataset."""
from __future__ import annotations

import click


@click.command()
@click.argument("root", metavar="DIR", type=click.Path(file_okay=False))
@click.pass_context
def command(ctx: click.Context, root: str) -> None:
    """Re-read every shard and list each defect on its own line (exit status 1 if any).

    Checks: files readable; shapes and dtypes as the schema; no empty image; background
    exactly zero (alpha 0 means rgb 0); poses in range; sample ids unique; counts as
    index.json says. With layers: the composite of each layer stack against its image,
    whose figures are printed (it fails only where the layers do not make up the image).
    """
    from pipeline.verify import verify

    composites: list = []
    defects = verify(root, composites=composites)
    for figures in composites:
        click.echo(figures.line())
    for defect in defects:
        click.echo(defect)
    if defects:
        click.echo(f"{len(defects)} defect(s) in {root}", err=True)
        ctx.exit(1)
    click.echo(f"{root}: ok")
