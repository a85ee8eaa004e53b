"""The one error type for bad configuration, map and affordance files: names the file and the field."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration, map or manifest problem, reported as ``file: field: message``.

    Attributes:
        file: The file the problem was found in (or ``"<overrides>"`` for ``--set`` values).
        field: A dotted key path or entry name inside that file; empty when the whole file is at fault.
        message: What is wrong, in plain words.
    """

    def __init__(self, file: str, field: str, message: str) -> None:
        self.file = str(file)
        self.field = field
        self.message = message
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {message}")
