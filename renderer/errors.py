"""Errors a user can fix (``UserError``), and the one the loader raises for bad model files."""
from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input a user can fix: the command line prints ``str(error)`` as one line and exits
    with ``exit_code``, no traceback; anything else is a bug and keeps its traceback.

    Picklable with its fields, whatever a subclass's ``__init__`` takes, so an error crosses
    process boundaries (build workers, the GUI's render process) as itself.
    """

    exit_code = 2  # the command line's status for bad input (1: some models failed)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuilt, (type(self), self.args), self.__dict__


def _rebuilt(kind: type[UserError], args: tuple[Any, ...]) -> UserError:
    """An error of ``kind`` holding ``args``, made without its ``__init__`` (whose parameters differ)."""
    return kind.__new__(kind, *args)


class ModelError(UserError, ValueError):
    """A model file cannot be used: truncated, wrong magic, index out of range, no vertices...

    The message always starts with the file name and says what is wrong, so a batch
    job can print ``str(error)`` as its one-line report.
    """

    def __init__(self, path: str | None, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{one_line(path or '<bytes>')}: {reason}")


def one_line(text: str) -> str:
    """``text`` with control characters escaped (a newline in a file name must not split a report)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
