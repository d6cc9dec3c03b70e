"""One deadline object for every wait in the testbed.

    deadline = Deadline(5.0)
    while not done():
        if deadline.expired:
            raise TimeoutError(f"... within {deadline.timeout:g} s")
        cond.wait(deadline.remaining_or(0.5))

A deadline is measured on the host's monotonic clock, never the (warpable) wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Deadline:
    """A point in monotonic time, ``timeout`` seconds after it was made (None: never)."""

    timeout: float | None
    start: float = field(default_factory=time.monotonic)

    @property
    def end(self) -> float | None:
        return None if self.timeout is None else self.start + self.timeout

    @property
    def remaining(self) -> float | None:
        """Seconds left (never negative), or None when the deadline never comes."""
        end = self.end
        return None if end is None else max(0.0, end - time.monotonic())

    @property
    def expired(self) -> bool:
        end = self.end
        return end is not None and time.monotonic() >= end

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining_or(self, cap: float) -> float:
        """Seconds left, at most ``cap`` (for a wait that wakes up now and then)."""
        left = self.remaining
        return cap if left is None else min(cap, left)

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until the deadline, whichever is first; False once expired."""
        time.sleep(self.remaining_or(seconds))
        return not self.expired

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(seconds)
