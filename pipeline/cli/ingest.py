"""``mmdsynth ingest``: downloaded archives and folders -> one models folder with a catalog."""
from __future__ import annotations

import time

import click


@click.command("ingest")
@click.argument("sources", nargs=-1, required=True, metavar="SRC...")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Models folder: one subfolder per source, and catalog.jsonl.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def command(ctx: click.Context, sources: tuple[str, ...], out: str, quiet: bool) -> None:
    """Unpack model archives (.zip, Shift-JIS names too; .7z; .rar) and folders into --out.

    Each source gets its own folder under a clean name, with the authors' readme and
    licence files; identical models are kept once; OUT/catalog.jsonl records per model
    its source, licence file, group and variant family. Bad archives are reported and
    skipped (exit status 1). Running it again skips what is already there.

    \b
    mmdsynth ingest downloads/ --out models/
    mmdsynth suggest models/ --manifest manifests/mine.jsonl
    """
    from pipeline.ingest import ingest

    start = time.perf_counter()
    report = ingest(sources, out, progress=not quiet)
    seconds = time.perf_counter() - start
    models = len(report.added) + len(report.duplicates)
    click.echo(report.table())
    click.echo(f"{models} models from {len({entry.source for entry in report.added})} new sources in "
               f"{seconds:.1f} s ({models / max(seconds, 1e-9):.1f} models/s); catalog: {out}/catalog.jsonl")
    for reason in report.failed:
        click.echo(f"failed: {reason}", err=True)
    if report.failed:
        ctx.exit(1)
