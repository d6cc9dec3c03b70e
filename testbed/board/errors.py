"""Errors raised by boards and their consoles."""

from __future__ import annotations


class BoardError(Exception):
    """Something went wrong driving a board."""


class BoardCrashed(BoardError):
    """The board's kernel printed a death string (Oops, BUG, panic)."""

    def __init__(self, line: str, last_lines: list[str], log_path: str | None = None):
        self.line = line
        self.last_lines = last_lines
        self.log_path = log_path
        tail = "\n".join(last_lines[-40:])
        where = f"\nconsole log: {log_path}" if log_path else ""
        super().__init__(f"the board crashed: {line!r}\n--- last console lines ---\n{tail}{where}")


class BoardBootTimeout(BoardError):
    """The board did not print its ready line in time."""


class ConsoleTimeout(BoardError):
    """A console command did not finish in time."""


class ConsoleClosed(BoardError):
    """The console connection ended (the board went away)."""
