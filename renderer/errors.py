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
        super().__init__(f"{path or '<bytes>'}: {reason}")
