"""``mmdsynth build``: a thin shell over :func:`pipeline.build.build`."""
from __future__ import annotations

import click


@click.command()
@click.option("--manifest", "-m", required=True, type=str,
              help="Manifest (JSON lines); records with status ok are built.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Dataset directory: shards/, index.json, preview.png, pose_histograms.png.")
@click.option("--poses", "-n", type=click.IntRange(min=1),
              help="Total poses, spread evenly over the models (the remainder to the first ones).")
@click.option("--poses-per-model", type=click.IntRange(min=1), help="Poses per model instead of --poses.")
@click.option("--jobs", "-j", default=1, show_default=True, type=int,
              help="Parallel workers (-1: one per core); ignored by a Dask cluster, which uses its workers.")
@click.option("--backend", type=click.Choice(["loky", "dask"]), default="loky", show_default=True,
              help="Local processes (loky) or a Dask cluster.")
@click.option("--scheduler", metavar="ADDR",
              help="Dask scheduler address (tcp://host:8786); without it --backend dask starts a local "
                   "cluster. Workers must see the models and --out at the same paths (a shared filesystem).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the pose sampling and the splits.")
@click.option("--size", type=click.IntRange(min=8),
              help="Image side in pixels [default: the pose schema's, 256 for tha1].")
@click.option("--pose-schema", default="tha1", show_default=True,
              help="What a pose is: a preset (tha1: DESIGN.md's 6 numbers; tha3: THA3/THA4's 45 parameters, "
                   "512 px) or a schema file (manifests/schema.py says its keys).")
@click.option("--shard-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Samples per shard at most (whole models are kept together when they fit).")
@click.option("--layers", is_flag=True, help="Also render per-part layer stacks (needs pipeline.layers).")
@click.option("--layer-config", type=str,
              help="Layer taxonomy for --layers: a preset (see-through: See-through's 23 classes, the default; "
                   "coarse: the earlier 11 layers) or a YAML or JSON file (preset, names and order, keywords, "
                   "renames; see annotator/layers.py).")
@click.option("--shading", type=click.Choice(["phong", "toon"]), default="phong", show_default=True,
              help="Phong (DESIGN.md's lighting) or MMD's toon shading.")
@click.option("--jitter", is_flag=True,
              help="Shift and scale each sample's framing at random (from its own random stream; stored per "
                   "sample as jitter = dx, dy, scale); the expression image, the posed image and their layers "
                   "alike. Off by default: talking-head triplets keep one framing.")
@click.option("--styles", metavar="STYLE[,STYLE...]",
              help="Pick each sample's shading at random from these (phong, toon, toon+edges; stored per "
                   "sample as style); replaces --shading; the rest image uses the first.")
@click.option("--framing", type=click.Choice(["head", "full-body"]), default="head", show_default=True,
              help="DESIGN.md's head framing (head top and chin on the middle half of the height), or the "
                   "whole model centred (for full-body trainers).")
@click.option("--gpu", "gpus", multiple=True, metavar="N[,N...]",
              help="EGL device index to render on; repeat it or give a comma list to spread the shards "
                   "over several GPUs [default: the default device]. Not part of the config: a build may "
                   "resume on other GPUs.")
@click.option("--split-fractions", default="0.9,0.05,0.05", show_default=True, metavar="TRAIN,VAL,TEST",
              help="Fractions of groups per split (records with their own split keep it).")
@click.option("--models-root", type=click.Path(file_okay=False, exists=True),
              help="Folder the manifest's model paths are relative to [default: the manifest's folder].")
@click.option("--force", is_flag=True, help="Start over when DIR holds a build with a different config.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def command(ctx: click.Context, manifest: str, out: str, poses: int | None, poses_per_model: int | None,
            jobs: int, backend: str, scheduler: str | None, seed: int, size: int | None, pose_schema: str,
            shard_size: int, layers: bool, layer_config: str | None, shading: str, jitter: bool, styles: str | None,
            framing: str, gpus: tuple[str, ...], split_fractions: str,
            models_root: str | None, force: bool, quiet: bool) -> None:
    """Render sampled poses of every usable model into sharded HDF5 under --out.

    Per model a rest image, per pose an expression image and a posed image. Resumable:
    rerun the same command after a crash and only missing shards are rendered; a
    changed config is refused unless --force. A model that fails to load or render is
    reported and skipped (exit status 1); bad input exits with status 2, a full disk
    with 3 (temporary files removed), Ctrl-C with 130 and SIGTERM with 143.

    \b
    mmdsynth build -m manifests/mine.jsonl -o data/ --poses 100000 --jobs 8
    mmdsynth build -m m.jsonl -o data/ --poses 100000 --backend dask --scheduler tcp://host:8786
    mmdsynth build -m m.jsonl -o data/ --poses 100000 --jobs 8 --gpu 0,1 --shading toon
    mmdsynth build -m m.jsonl -o data/ --poses 100000 --layers --jitter --styles phong,toon,toon+edges
    mmdsynth build -m m.jsonl -o data/ --poses 100000 --pose-schema tha3
    """
    from pipeline.build import build
    from pipeline.splits import parse_fractions

    if (poses is None) == (poses_per_model is None):
        raise click.UsageError("give exactly one of --poses and --poses-per-model")
    if scheduler and backend != "dask":
        raise click.UsageError("--scheduler needs --backend dask")
    report = build(manifest, out, poses, poses_per_model=poses_per_model, jobs=jobs, backend=backend,
                   scheduler=scheduler, seed=seed, size=size, pose_schema=pose_schema, layers=layers,
                   shard_size=shard_size, fractions=parse_fractions(split_fractions), models_root=models_root,
                   force=force, progress=not quiet, shading=shading, gpus=parse_gpus(gpus),
                   layer_config=layer_config, jitter=jitter, framing=framing,
                   styles=[style.strip() for style in styles.split(",")] if styles else None)
    click.echo(report.summary())
    if report.failed:
        ctx.exit(1)


def parse_gpus(values: tuple[str, ...]) -> list[int]:
    """``--gpu 0 --gpu 1`` and ``--gpu 0,1`` -> [0, 1]."""
    try:
        return [int(item) for value in values for item in value.split(",") if item.strip()]
    except ValueError:
        raise click.BadParameter(f"{', '.join(values)}: give EGL device numbers, e.g. 0 or 0,1",
                                 param_hint="--gpu") from None
