"""The ``mmdsynth`` command: a thin click shell over the library.

Each subcommand lives in its own module (``pipeline/cli/<name>.py``, exposing
``command``) and is imported only when used, so ``mmdsynth --help`` stays instant and
a command never pays for another's imports (moderngl, h5py, dask...).
"""
from __future__ import annotations

import importlib
import signal
import sys

import click

from renderer.errors import UserError

COMMANDS = {
    "ingest": "unpack model archives and folders into a models folder with a catalog",
    "info": "what the loader reads from model files",
    "demo": "build a small dataset from the built-in demo character",
    "preview": "render one image of a model",
    "suggest": "automatic annotation as manifest records",
    "annotate": "the labeling GUI (a local web app)",
    "build": "the batch job: poses -> sharded HDF5 (resumable)",
    "inspect": "summary of a built dataset",
    "verify": "integrity check of a built dataset",
    "export": "a built dataset as PNG folders or WebDataset tars, with poses as CSV",
    "layers": "Live2D-style layer tools (import dumps)",
    "bench": "throughput figures beside their references",
}


class CommandError(UserError, click.ClickException):
    """Bad input the command line itself finds (an option's value): click prints it as one line."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


# What a user can fix, printed as one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


# The data formats' own errors: the trainer-facing reader imports nothing of the renderer, so these
# cannot derive from UserError. Looked up by name: when one was raised its module is loaded, and the
# CLI's start-up stays free of h5py.
FORMAT_ERRORS = {"pipeline.shards": "DatasetError", "manifests.record": "ManifestError",
                 "manifests.schema": "SchemaError"}


def user_fixable(error: BaseException) -> bool:
    """Whether ``error`` is bad input to print as one line (else a bug, which keeps its traceback)."""
    formats = tuple(getattr(sys.modules[module], name) for module, name in FORMAT_ERRORS.items()
                    if module in sys.modules)
    return isinstance(error, USER_ERRORS + formats)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"pipeline.cli.{name}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmd-synth")
def cli() -> None:
    """mmd-synth: MikuMikuDance models -> training data for talking-head and layer networks.

    Start with `mmdsynth demo`, which builds a small dataset from the built-in demo
    character. Conventions (pose axes, framing, lighting) are in the README.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that the same
    cleanup runs (a build stops its workers and removes its temporary shards)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort as error:
        terminated = isinstance(error.__cause__, Terminated)
        click.echo("terminated" if terminated else "aborted", err=True)
        sys.exit(128 + signal.SIGTERM if terminated else 130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except Exception as error:
        if not user_fixable(error):
            raise
        click.echo(f"error: {error}", err=True)
        sys.exit(getattr(error, "exit_code", 2))  # a UserError may have its own (a full disk: 3)
    # ctx.exit(n) inside a command (e.g. "some models failed") comes back as n.
    sys.exit(code if isinstance(code, int) else 0)
