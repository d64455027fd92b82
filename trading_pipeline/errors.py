"""The project's own error types.

Bad input is answered with an :class:`InputFileError` that names the file, the row,
the column and the reason, so a person can find and fix the problem without reading
a traceback. Nothing is written when one is raised.
"""

from __future__ import annotations


class TradingPipelineError(Exception):
    """Base class of every error the project raises on purpose."""


class InputFileError(TradingPipelineError):
    """A file the project was asked to read cannot be used.

    Args:
        file: the file's name or path, as the user gave it.
        reason: what is wrong, in words a user understands.
        row: 1-based line number in the file when the problem is on one line.
        column: the column's header name when the problem is in one column.
    """

    def __init__(self, file: str, reason: str, *, row: int | None = None, column: str | None = None):
        self.file = str(file)
        self.reason = reason
        self.row = row
        self.column = column
        super().__init__(self.describe())

    def describe(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.reason}"


class ConfigurationError(TradingPipelineError):
    """A setting is missing or inconsistent."""
