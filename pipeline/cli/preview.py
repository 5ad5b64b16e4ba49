"""``mmdsynth preview``: render one image of a model, framed and posed as the dataset would be."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import UserError, register_user_error

POSE_HELP = ("Six comma-separated numbers: eye_left, eye_right, mouth in [0, 1] (1 = closed eye, "
             "open mouth), then neck_z, head_x, head_y in [-1, 1] (x15 degrees).")


@click.command("preview")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--pose", default="0,0,1,0,0,0", show_default=True, help=POSE_HELP)
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096), help="Image width and height.")
@click.option("--shading", type=click.Choice(["phong", "toon"]), default="phong", show_default=True,
              help="phong: the dataset's lighting (DESIGN.md); toon: MMD's own look.")
@click.option("--edges", is_flag=True, help="Draw MMD's outlines (toon shading).")
@click.option("--msaa", default=0, show_default=True, type=click.IntRange(0, 16), help="Multisample count (0 = off).")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              help="Take head bounds and morph roles from this manifest's record of MODEL "
                   "[default: suggest them from the model].")
@click.option("--gpu", type=int, help="EGL device index [default: the first].")
def command(model: str, out: str, pose: str, size: int, shading: str, edges: bool, msaa: int,
            manifest: str | None, gpu: int | None) -> None:
    """Render MODEL in one pose to a PNG (RGBA, transparent background)."""
    numbers = parse_pose(pose)
    from PIL import Image

    from manifests.record import ManifestError
    from renderer.context import ContextError
    from renderer.loader import load_model
    from renderer.renderer import Renderer

    register_user_error(ManifestError, ContextError)
    loaded = load_model(model)
    head, binding, notes = manifest_setup(loaded, manifest) if manifest else suggested_setup(loaded)
    with Renderer(loaded, head_bounds=head, morphs=binding, size=size, shading=shading, msaa=msaa,
                  gpu=gpu, edges=edges) as renderer:
        image = renderer.render(numbers)
    Image.fromarray(image).save(out)
    click.echo(f"wrote {out}: head top {head[0]:.3f}, chin {head[1]:.3f}; {'; '.join(notes)}")


def parse_pose(text: str) -> list[float]:
    """'0,0,1,0,0,0' -> six floats within their ranges, or a one-line UserError."""
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--pose {text!r}: not comma-separated numbers") from None
    if len(numbers) != 6:
        raise UserError(f"--pose {text!r}: needs 6 numbers, got {len(numbers)}")
    limits = [(0, 1)] * 3 + [(-1, 1)] * 3
    if not all(low <= value <= high for value, (low, high) in zip(numbers, limits)):
        raise UserError(f"--pose {text!r}: eye/mouth must be in [0, 1] and rotations in [-1, 1]")
    return numbers


def manifest_setup(model, manifest: str):
    """Head bounds and morph binding from the manifest's record of this model."""
    from manifests.store import default_models_root, model_sha256, read_manifest

    root = default_models_root(manifest)
    path = Path(model.path).resolve()
    records = read_manifest(manifest)
    record = next((r for r in records if (root / r.model).resolve() == path), None)
    if record is None:
        digest = model_sha256(path)
        record = next((r for r in records if r.sha256 == digest), None)
    if record is None or record.head_bounds is None:
        raise UserError(f"{manifest}: no record with head bounds for {model.path}")
    binding, notes = bind(record.morphs, {m.name for m in model.morphs})
    return record.head_bounds, binding, [f"from {manifest}", *notes]


def suggested_setup(model):
    """Head bounds and morph binding suggested from the model itself, saying what was used."""
    from annotator.head import NotACharacter, suggest_head_bounds
    from annotator.suggest import suggest_roles
    from renderer.renderer import MorphBinding, guess_head_bounds

    try:
        head, notes = suggest_head_bounds(model)[:2], ["head bounds suggested from the mesh"]
    except NotACharacter as error:
        head, notes = guess_head_bounds(model), [f"head bounds guessed from the bounding box ({error})"]
    try:
        roles = suggest_roles(model, head).roles
    except NotACharacter as error:
        return head, MorphBinding(), [*notes, f"no morphs bound ({error})"]
    binding, bound = bind(roles)
    return head, binding, [*notes, "morph roles suggested", *bound]


def bind(roles, available=None):
    """(MorphBinding, notes) for manifest roles; a model without a mouth morph still previews."""
    from annotator.binding import RoleError, bind_roles
    from renderer.renderer import MorphBinding

    try:
        channels = bind_roles(roles, available)
    except RoleError as error:
        return MorphBinding(), [f"no morphs bound ({error})"]
    return channels.binding(), channels.fallbacks
