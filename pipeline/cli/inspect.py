"""``mmdsynth inspect DIR``: what a built dataset holds."""
from __future__ import annotations

import json

import click


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


@click.command()
@click.argument("root", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def command(root: str, as_json: bool) -> None:
    """Counts per split and per model, size on disk, the build config and failed models."""
    from pipeline.verify import inspect

    summary = inspect(root)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(f"{summary['root']}: {summary['samples']} samples in {summary['shards']} shards, "
               f"{_megabytes(summary['bytes'])} on disk ({summary['bytes_per_sample'] / 1e3:.1f} kB per sample)")
    click.echo("splits: " + ", ".join(f"{split} {n}" for split, n in summary["splits"].items()))
    click.echo(f"models ({len(summary['models'])}):")
    for name, n in summary["models"].items():
        click.echo(f"  {n:8d}  {name}")
    click.echo("config: " + json.dumps(summary["config"], sort_keys=True))
    for entry in summary["failed"]:
        click.echo(f"failed: {entry['model']}: {entry['reason']}")
