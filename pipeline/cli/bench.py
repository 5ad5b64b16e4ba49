"""``mmdsynth bench``: throughput figures, each printed beside its reference from the same run."""
from __future__ import annotations

import importlib
import json

import click

# flag -> (module under pipeline.bench, what it measures against)
BENCHMARKS = {
    "loader": "parse time against pymeshio on the same files (target: 10x faster)",
    "renderer": "full render path against a bare draw-and-read loop (target: 80%)",
    "build": "whole build against the bare draw limit (target: 0.7 with 2 jobs)",
    "reader": "shard reads against a PNG folder and a PNG tar (target: 3x the folder)",
    "dataloader": "torch DataLoader: the batch recipe and the plain loader against get_batch (target: 1x)",
}


def _options(function):
    for name, help_text in reversed(BENCHMARKS.items()):
        function = click.option(f"--{name}", is_flag=True, help=help_text)(function)
    return function


@click.command()
@_options
@click.option("--json", "as_json", is_flag=True, help="Also print the figures as one JSON object per benchmark.")
def command(as_json: bool, **chosen: bool) -> None:
    """Throughput figures side by side with their references.

    Without flags every benchmark runs. Each one measures its reference in the same
    run, because these machines are noisy: read the ratios, not the absolute figures.
    """
    names = [name for name, on in chosen.items() if on] or list(BENCHMARKS)
    for name in names:
        click.echo(f"== bench {name}: {BENCHMARKS[name]}")
        figures = importlib.import_module(f"pipeline.bench.{name}").run()
        if as_json:
            click.echo(json.dumps({"bench": name, **figures}, default=str))
