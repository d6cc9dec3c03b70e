"""A board's console log as a person reads it, with the raw transcript kept beside it.

The console reader hands every complete line to :class:`ConsoleLog`, and the console
tells it each command the testbed typed (the shell does not echo them: the testbed
turns the tty's echo off). The rendered log (``<name>.log``) then reads::

    # console of board-1, opened 2026-12-02 09:48:11 UTC; [wall clock (UTC) +seconds since opened]
    # '$ ...' lines are the commands the testbed typed; raw transcript: board-1.raw.log
    [09:48:11.902 +0.790] $ cat /root/state
    [09:48:11.911 +0.799] provisioned=1
    [09:48:12.020 +0.908] @tb event=sync-ok optin=1 boundary=EU validity=172800 throttled=0

- each command the testbed typed is a ``$ command`` line (``console.run()``'s wrapping
  ``echo TB..S;{ ... }; echo TB..E$?`` is not shown, only the command), a non-zero exit
  code a ``(exit N)`` line after its output, a ``--secret`` argument as ``***``;
- the echo of that wrapping (the tty echoes until ``prepare()`` turns echo off),
  the markers (``TB<tag>S``, ``TB<tag>E<code>``, ``TB<tag>R``) and the prompts they leave
  alone on a line are dropped, as are terminal escapes and carriage returns;
- an ``@tb`` line printed right after a prompt loses the prompt, and a blank line after
  an ``@tb`` line is dropped.

The raw transcript (``<name>.raw.log``) is every byte the port gave, for debugging the
testbed itself. The same rendering gives ``console.tail()``, so pytest's failure
sections and the scenario report's and JUnit's console excerpts read the same way.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import IO

from testbed.contract.events import EVENT_PREFIX, is_event_line

#: Hex digits in a command's marker tag.
TAG_LENGTH = 10
#: What the shell prints around a command of console.run() (S start, E<exit code> end)
#: and for wait_ready()'s probe (R).
MARKER = re.compile(rf"TB[0-9a-f]{{{TAG_LENGTH}}}(S|R|E(\d+))")
#: The same marker as typed (with quotes inside, so the shell's echo of a typed line never
#: reads as the marker): a line holding it is the echo of the testbed's own typing.
TYPED_MARKER = re.compile(rf"TB''[0-9a-f]{{{TAG_LENGTH}}}")
#: A line that holds nothing but prompts once its marker is gone: "board:/# > ", "> ", "$ ".
_ONLY_PROMPTS = re.compile(r"^\s*(?:\S*[#$]\s)?\s*(?:>\s*)*$")
#: A prompt in front of an ``@tb`` line (the event came while the shell was waiting).
_PROMPT_BEFORE_EVENT = re.compile(r"^\s*(?:\S*[#$]\s|>\s)+(?=" + re.escape(EVENT_PREFIX) + ")")
#: A secret on a typed command line (tb-provision's): the log shows it as ***.
_SECRET_ARG = re.compile(r"(--secret[ =])('[^']*'|\S+)")
#: Terminal escapes (cursor queries, line editing) and control characters but tab.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|[\x00-\x08\x0b-\x1f\x7f]")


def new_tag() -> str:
    """A fresh marker tag for one command."""
    return uuid.uuid4().hex[:TAG_LENGTH]


def typed_marker(tag: str, kind: str) -> str:
    """The marker as the testbed types it (``kind`` S, R, or E followed by the shell's ``$?``)."""
    return f"TB''{tag}{kind}"


def raw_path_for(log_path: Path) -> Path:
    """Where the raw transcript of the rendered log ``log_path`` goes: ``<stem>.raw.log``."""
    return log_path.with_name(f"{log_path.stem}.raw{log_path.suffix or '.log'}")


class LineRenderer:
    """Turns console lines into the lines a person reads (keeps one line of state)."""

    def __init__(self) -> None:
        self._after_event = False

    def line(self, raw: str) -> list[str]:
        """The rendered lines for one console line (none, one, or the line and an exit code)."""
        text = _ESCAPES.sub("", raw.replace("\x1b[6n", ""))
        if TYPED_MARKER.search(text):  # echoed while the tty's echo was on (before prepare())
            return []
        exit_code: str | None = None
        marked = MARKER.search(text)
        if marked is not None:
            exit_code = marked.group(2)
            text = MARKER.sub("", text)
            if _ONLY_PROMPTS.match(text):
                text = ""
        out: list[str] = []
        if EVENT_PREFIX in text:
            text = _PROMPT_BEFORE_EVENT.sub("", text)
        if text.strip() or (marked is None and not self._after_event):
            out.append(text.rstrip())
            self._after_event = EVENT_PREFIX in text and is_event_line(text)
        if exit_code not in (None, "0"):
            out.append(f"(exit {exit_code})")
            self._after_event = False
        return out

    @staticmethod
    def command(cmd: str) -> list[str]:
        """A command the testbed typed, as ``$ cmd`` (continuation lines as ``> ...``; secrets as ***)."""
        first, *rest = _SECRET_ARG.sub(r"\1***", cmd).rstrip("\n").split("\n")
        return [f"$ {first}", *(f"> {line}" for line in rest)]


def render_text(raw: str) -> str:
    """A raw transcript (no times) rendered: markers, prompts alone, CRs and escapes gone."""
    renderer = LineRenderer()
    return "\n".join(out for line in raw.split("\n") for out in renderer.line(line))


class ConsoleLog:
    """The rendered log and the raw transcript of one console, and the last rendered lines.

    Thread-safe: the reader thread gives lines and raw bytes, the thread that types
    commands gives commands.
    """

    def __init__(self, log_path: Path | None, name: str = "board", history_lines: int = 400) -> None:
        self.path = log_path
        self.raw_path = raw_path_for(log_path) if log_path else None
        self.name = name
        self.opened_monotonic = time.monotonic()
        self.opened_wall = time.time()
        self.tail: deque[str] = deque(maxlen=history_lines)
        self._renderer = LineRenderer()
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._raw: IO[bytes] | None = None
        if log_path is not None and self.raw_path is not None:
            self._file = log_path.open("a", encoding="utf-8")
            self._raw = self.raw_path.open("ab")
            opened = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.opened_wall))
            self._file.write(
                f"# console of {name}, opened {opened}; [wall clock (UTC) +seconds since opened]\n"
                f"# '$ ...' lines are the commands the testbed typed; raw transcript: {self.raw_path.name}\n"
            )
            self._file.flush()

    def _stamp(self, monotonic: float) -> str:
        wall = self.opened_wall + (monotonic - self.opened_monotonic)
        clock = time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}"
        return f"[{clock} +{monotonic - self.opened_monotonic:.3f}]"

    def _write(self, lines: list[str], monotonic: float) -> None:
        if not lines:
            return
        stamp = self._stamp(monotonic)
        with self._lock:
            for text in lines:
                stamped = f"{stamp} {text}" if text else stamp
                self.tail.append(stamped)
                if self._file is not None:
                    self._file.write(stamped + "\n")
            if self._file is not None:
                self._file.flush()

    def raw(self, data: bytes) -> None:
        """Bytes as the port gave them (the raw transcript)."""
        if self._raw is not None:
            with self._lock:
                self._raw.write(data)
                self._raw.flush()

    def line(self, text: str, monotonic: float | None = None) -> None:
        """One complete console line (without its newline), read at ``monotonic``."""
        with self._lock:
            rendered = self._renderer.line(text)
        self._write(rendered, time.monotonic() if monotonic is None else monotonic)

    def command(self, cmd: str, monotonic: float | None = None) -> None:
        """A command the testbed typed (the board does not echo it)."""
        self._write(LineRenderer.command(cmd), time.monotonic() if monotonic is None else monotonic)

    def close(self, partial: bytes = b"") -> None:
        """Write what is left of an unfinished line (unless it is only the prompt), and close both files."""
        text = partial.decode("utf-8", "replace").replace("\r", "")
        if not _ONLY_PROMPTS.match(text):  # its bytes are in the raw transcript already
            self.line(text)
        with self._lock:
            for f in (self._file, self._raw):
                if f is not None:
                    f.close()
            self._file = self._raw = None
