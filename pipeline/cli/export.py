"""``mmdsynth export``: a built dataset -> PNG folders or WebDataset tars, with the poses as CSV."""
from __future__ import annotations

import click


@click.command("export")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "to", required=True, type=click.Choice(["png", "webdataset"]),
              help="PNG files in a folder per split, or one WebDataset tar per shard.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder to export into.")
@click.option("--background", type=click.Choice(["none", "white", "black"]), default="none", show_default=True,
              help="Composite the colour over this background (none: keep it as rendered).")
@click.option("--rgb", is_flag=True, help="Drop the alpha channel (3-channel PNGs).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(directory: str, to: str, out: str, background: str, rgb: bool, quiet: bool) -> None:
    """Export the dataset in DIR for trainers that read image folders or WebDataset tars.

    Rest images are written once per model (OUT/rest/) and referenced; OUT/{split}.csv has
    one row per sample with its images and pose; OUT/export.json the build config.

    \b
    mmdsynth export data/ --to png --out data-png/ --background white --rgb
    mmdsynth export data/ --to webdataset --out data-wds/
    """
    from pipeline.export import export

    report = export(directory, out, to, background=background, rgb=rgb, progress=not quiet)
    samples = sum(report.splits.values())
    click.echo(f"{out}: {samples} samples ({', '.join(f'{s} {n}' for s, n in report.splits.items())}), "
               f"{report.rest_images} rest images in {report.seconds:.1f} s "
               f"({samples / max(report.seconds, 1e-9):.0f} samples/s)")
