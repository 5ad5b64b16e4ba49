"""Which files are models: the suffixes, and what a command-line argument names.

An argument may be a model file, a folder (searched recursively) or a glob pattern,
quoted or not: ``'models/**/*.pmx'`` matches at any depth without bash's globstar.
"""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

MODEL_SUFFIXES = (".pmx", ".pmd")
GLOB_CHARACTERS = frozenset("*?[")


def is_model_file(path: Path) -> bool:
    return path.suffix.lower() in MODEL_SUFFIXES and path.is_file()


def model_files(folder: str | os.PathLike) -> list[Path]:
    """Every .pmx/.pmd below ``folder`` (any case), sorted."""
    return sorted(path for path in Path(folder).rglob("*") if is_model_file(path))


def expand_inputs(arguments: Iterable[str]) -> list[Path]:
    """Model files named by files, folders and glob patterns, each once, in argument order.

    Raises FileNotFoundError (one line, naming the argument) for an argument that names nothing.
    """
    found: dict[Path, None] = {}
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            matches = model_files(path)
        elif path.is_file():
            matches = [path]
        elif GLOB_CHARACTERS & set(argument):
            matches = [Path(match) for match in sorted(glob.glob(argument, recursive=True))
                       if is_model_file(Path(match))]
        else:
            raise FileNotFoundError(f"{argument}: no such file or folder")
        if not matches:
            raise FileNotFoundError(f"{argument}: no .pmx or .pmd files in it or below it")
        found.update(dict.fromkeys(matches))
    return list(found)
