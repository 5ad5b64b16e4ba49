"""``mmdsynth preview``: render one image of a model, framed and posed as the dataset would be."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import CommandError

POSE_HELP = ("The pose: comma-separated numbers in the schema's order (tha1: eye_left, eye_right, mouth in "
             "[0, 1], 1 = closed eye, open mouth; neck_z, head_x, head_y in [-1, 1], x15 degrees), or "
             "name=value pairs with the other parameters at rest (eye_wink_left=1,head_y=0.5) "
             "[default: the schema's rest pose].")


@click.command("preview")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--pose", help=POSE_HELP)
@click.option("--pose-schema", default="tha1", show_default=True,
              help="Pose schema: a preset (tha1: DESIGN.md's 6 numbers; tha3: THA3/THA4's 45) or a schema file.")
@click.option("--size", type=click.IntRange(16, 4096), help="Image width and height [default: the schema's].")
@click.option("--shading", type=click.Choice(["phong", "toon"]), default="phong", show_default=True,
              help="phong: the dataset's lighting (DESIGN.md); toon: MMD's own look.")
@click.option("--edges", is_flag=True, help="Draw MMD's outlines (toon shading).")
@click.option("--msaa", default=0, show_default=True, type=click.IntRange(0, 16), help="Multisample count (0 = off).")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              help="Take head bounds and morph roles from this manifest's record of MODEL "
                   "[default: suggest them from the model].")
@click.option("--gpu", type=int, help="EGL device index [default: the first].")
def command(model: str, out: str, pose: str | None, pose_schema: str, size: int | None, shading: str,
            edges: bool, msaa: int, manifest: str | None, gpu: int | None) -> None:
    """Render MODEL in one pose to a PNG (RGBA, transparent background)."""
    from manifests.schema import load_schema

    schema = load_schema(pose_schema)
    numbers = parse_pose(pose, schema)
    from PIL import Image

    from annotator.binding import bind_roles
    from renderer.loader import load_model
    from renderer.renderer import Renderer

    loaded = load_model(model)
    head, roles, notes = manifest_setup(loaded, manifest) if manifest else suggested_setup(loaded)
    binding = bind_roles(roles, schema=schema, model=loaded, strict=False)  # a model without a mouth still previews
    unshown = [name for name, value, default in zip(schema.names, numbers, schema.vector("default").tolist())
               if name in binding.masked and value != default]
    notes += [*binding.fallbacks, *(f"{name}: no driver on this model, not shown" for name in unshown)]
    with Renderer(loaded, head_bounds=head, drivers=binding.drivers, size=size or schema.framing.size,
                  shading=shading, msaa=msaa, gpu=gpu, edges=edges,
                  framing=(schema.framing.head_height, schema.framing.head_centre)) as renderer:
        image = renderer.render(numbers)
    Image.fromarray(image).save(out)
    click.echo(f"wrote {out}: head top {head[0]:.3f}, chin {head[1]:.3f}; {'; '.join(notes)}")


def parse_pose(text: str | None, schema) -> list[float]:
    """'0,0,1,0,0,0' or 'mouth=1,head_y=0.5' -> the schema's numbers within their ranges, or a one-line CommandError."""
    numbers = schema.vector("rest").tolist()
    if text is None:
        return numbers
    parts = [part.strip() for part in text.split(",")]
    try:
        if any("=" in part for part in parts):
            for name, _, value in (part.partition("=") for part in parts):
                if name.strip() not in schema.names:
                    raise CommandError(f"--pose {text!r}: {schema.name} has no parameter {name.strip()!r}")
                numbers[schema.index(name.strip())] = float(value)
        else:
            numbers = [float(part) for part in parts]
    except ValueError:
        raise CommandError(f"--pose {text!r}: not comma-separated numbers or name=value pairs") from None
    if len(numbers) != schema.size:
        raise CommandError(f"--pose {text!r}: {schema.name} needs {schema.size} numbers, got {len(numbers)}")
    outside = [p for value, p in zip(numbers, schema.parameters) if not p.range[0] <= value <= p.range[1]]
    if outside:
        raise CommandError(f"--pose {text!r}: {outside[0].name} must be in [{outside[0].range[0]:g}, "
                        f"{outside[0].range[1]:g}]")
    return numbers


def manifest_setup(model, manifest: str):
    """Head bounds and morph roles from the manifest's record of this model."""
    from manifests.store import default_models_root, model_sha256, read_manifest

    root = default_models_root(manifest)
    path = Path(model.path).resolve()
    records = read_manifest(manifest)
    record = next((r for r in records if (root / r.model).resolve() == path), None)
    if record is None:
        digest = model_sha256(path)
        record = next((r for r in records if r.sha256 == digest), None)
    if record is None or record.head_bounds is None:
        raise CommandError(f"{manifest}: no record with head bounds for {model.path}")
    return record.head_bounds, record.morphs, [f"from {manifest}"]


def suggested_setup(model):
    """Head bounds and morph roles suggested from the model itself, saying what was used."""
    from annotator.head import NotACharacter, suggest_head_bounds
    from annotator.suggest import suggest_roles
    from renderer.renderer import guess_head_bounds

    try:
        head, notes = suggest_head_bounds(model)[:2], ["head bounds suggested from the mesh"]
    except NotACharacter as error:
        head, notes = guess_head_bounds(model), [f"head bounds guessed from the bounding box ({error})"]
    try:
        roles = suggest_roles(model, head).roles
    except NotACharacter as error:
        return head, {}, [*notes, f"no morph roles ({error})"]
    return head, roles, [*notes, "morph roles suggested"]
