"""``mmdsynth annotate``: the labeling GUI, served on loopback."""
from __future__ import annotations

import click

from pipeline.cli import CommandError


@click.command("annotate")
@click.argument("directory", metavar="DIR")
@click.option("--manifest", required=True, help="Manifest (JSON lines) that confirmed records are merged into; "
                                                 "created on the first confirmation.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep loopback unless you trust the network.")
@click.option("--models-root", help="Folder that model paths are relative to [default: the manifest's folder].")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
def command(directory: str, manifest: str, port: int, host: str, models_root: str | None, no_browser: bool) -> None:
    """Label every .pmx/.pmd model below DIR in a local web GUI.

    Each model starts from an automatic suggestion (head bounds, eye and mouth morphs),
    least confident first; Enter confirms it and moves on. Every decision is merged into
    the manifest at once, so stopping the server (Ctrl-C) loses nothing.
    """
    import logging
    import webbrowser

    from werkzeug.serving import make_server

    from annotator.server import SetupError, create_app
    from manifests.record import ManifestError

    try:
        app = create_app(directory, manifest, models_root, hosts=served_hosts(host))
    except (SetupError, ManifestError) as error:
        raise CommandError(str(error)) from None
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as error:
        app.extensions["mmdsynth"].close()
        raise CommandError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per image request
    url = f"http://{host}:{server.server_port}/"
    repeated = app.extensions["mmdsynth"].catalog.repeated
    if repeated:
        click.echo(f"warning: {manifest} lists models more than once, the last line of each counts and "
                   f"the next save keeps only it: {'; '.join(repeated)}", err=True)
    click.echo(f"annotating {len(app.extensions['mmdsynth'].catalog.entries)} models; open {url} (Ctrl-C stops)")
    if not no_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()  # werkzeug's returns on Ctrl-C
    finally:
        server.server_close()
        app.extensions["mmdsynth"].close()
    click.echo("stopped; every decision is in the manifest")


def served_hosts(host: str) -> list[str]:
    """Host names the GUI answers to besides loopback: the --host address, and this
    machine's names when listening on every interface."""
    import socket

    if host in ("0.0.0.0", "::", ""):
        return [socket.gethostname(), socket.getfqdn()]
    return [host]
