"""Errors a user can fix (renderer.errors.UserError): one base the command line catches once,
picklable with their fields so they cross process boundaries as themselves."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from annotator.binding import RoleError
from annotator.head import NotACharacter
from annotator.layers import LayerConfigError
from annotator.server import SetupError
from manifests.record import ManifestError
from pipeline.archives import ArchiveError
from pipeline.build import BuildError
from pipeline.export import ExportError
from pipeline.live2d import Live2DImportError
from pipeline.plan import PlanError
from pipeline.splits import SplitError
from renderer.context import ContextError
from renderer.errors import ModelError, UserError


def round_trip(error: BaseException) -> BaseException:
    return pickle.loads(pickle.dumps(error))


def test_model_and_manifest_errors_pickle_with_their_fields():
    model = round_trip(ModelError("chars/a\nb.pmx", "truncated at byte 12"))
    assert type(model) is ModelError and str(model) == "chars/a\\nb.pmx: truncated at byte 12"
    assert (model.path, model.reason) == ("chars/a\nb.pmx", "truncated at byte 12")
    manifest = round_trip(ManifestError("manifest.jsonl:3", "not JSON"))
    assert type(manifest) is ManifestError and str(manifest) == "manifest.jsonl:3: not JSON"
    assert (manifest.where, manifest.reason) == ("manifest.jsonl:3", "not JSON")


@pytest.mark.parametrize("kind", [ModelError, BuildError, PlanError, SplitError,
                                  ExportError, ArchiveError, Live2DImportError,
                                  LayerConfigError, RoleError, NotACharacter, SetupError, ContextError])
def test_every_fixable_error_is_a_user_error(kind):
    assert issubclass(kind, UserError)


def test_the_command_line_prints_a_user_error_as_one_line(tmp_path):
    """`mmdsynth inspect` on a folder that holds no dataset: the shard format's DatasetError, which
    stays outside the base (the reader imports nothing of ours), is caught too."""
    run = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "inspect", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1, run.stderr
