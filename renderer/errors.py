"""The one exception type the loader raises for bad model files."""
from __future__ import annotations


class ModelError(ValueError):
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
