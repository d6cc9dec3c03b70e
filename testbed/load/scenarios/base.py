"""What a load scenario is: its parameters, its preparation, its run and its checks.

One module per scenario in this package subclasses :class:`LoadScenario` and
registers it by name (:func:`register`); ``testbed.load.scenarios.run`` drives
any of them the same way. A scenario's Locust part is a locustfile in
``scenarios/load/``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from testbed.load.counters import COUNTERS_FILE
from testbed.load.params import Param, ParamError, resolve
from testbed.load.provision import Fleet
from testbed.load.runner import LocustPlan, LocustResult, run_locust


class ScenarioError(ParamError):
    """A scenario cannot run as asked (bad option, missing service facility)."""


@dataclass
class RunOptions:
    scenario: str
    out_dir: Path
    users: int | None = None
    duration: float | None = None
    workers: int = 0
    devices: int | None = None
    service_url: str | None = None
    control_token: str | None = None
    service_pid: int | None = None
    throttle_limit: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None
    remote_workers: int = 0  # --master: workers on other machines
    master_bind_host: str = "127.0.0.1"
    master_port: int = 5557
    #: a service URL outside loopback is refused unless the caller made its network (a test's own namespaces)
    allow_remote_service: bool = False
    #: run this locustfile instead of the scenario's (the ``custom`` scenario needs one)
    locustfile: Path | None = None
    #: users started per second (Locust's --spawn-rate); 0: all at once
    spawn_rate: float = 0.0
    #: the user's own limits, checked after the run with the scenario's (None: no such check)
    max_p99_ms: float | None = None
    max_failure_ratio: float | None = None


def say(opts: RunOptions, msg: str) -> None:
    """A progress line: to the caller's callback, or stderr."""
    (opts.progress or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)


@dataclass
class ServiceHandle:
    url: str
    control_token: str
    pid: int | None
    throttle_limit: int
    process: Any = None  # ServiceProcess when the run started it


@dataclass
class ScenarioRun:
    """One run of a scenario: what its steps share."""

    opts: RunOptions
    params: dict[str, Any]
    out: Path
    service: ServiceHandle
    fleet: Fleet
    #: what preparation and run leave for the checks (memory before, kills, samples)
    state: dict[str, Any] = field(default_factory=dict)

    def say(self, msg: str) -> None:
        say(self.opts, msg)


@dataclass
class Figures:
    """What the Locust run measured: request statistics and the users' counters."""

    result: LocustResult
    stats: list[dict[str, Any]]
    sums: dict[str, float]
    samples: dict[str, list[Any]]

    @classmethod
    def read(cls, result: LocustResult) -> Figures:
        path = result.out_dir / COUNTERS_FILE
        counters = json.loads(path.read_text()) if path.exists() else {"sums": {}, "samples": {}}
        return cls(result, result.stats(), counters["sums"], counters["samples"])


Check = dict[str, Any]  # {"ok": bool, ...figures}


class LoadScenario:
    """A load scenario; subclasses set the class attributes and override the steps they need."""

    name: ClassVar[str]
    locustfile: ClassVar[str]
    summary: ClassVar[str]
    users: ClassVar[int]
    duration: ClassVar[float]
    #: what ``--param`` accepts, with the defaults
    params: ClassVar[tuple[Param, ...]] = ()
    #: keyword arguments of the ServiceProcess the run starts
    service_options: ClassVar[dict[str, Any]] = {}
    #: the run kills and restarts the service, so it cannot use a running one
    needs_own_service: ClassVar[bool] = False
    #: the checks measure the service's process (memory, sockets)
    needs_pid: ClassVar[bool] = False
    #: the locustfile's load shape ends the run (no --run-time)
    uses_shape: ClassVar[bool] = False
    #: any other ``--param KEY=VALUE`` is passed on to the locustfile (``CONTEXT.params``)
    accepts_other_params: ClassVar[bool] = False

    def devices(self, users: int) -> int:
        """Devices to claim for ``users`` users."""
        return users

    def users_for(self, users: int, processes: int) -> int:
        """The users actually run on ``processes`` Locust processes."""
        return users

    def resolve_params(self, given: dict[str, Any], users: int, duration: float, processes: int) -> dict[str, Any]:
        """Every parameter's value, checked, before anything starts (ParamError names the bad one)."""
        values = resolve(self.name, self.params, given)
        params = {k: v for k, v in values.items() if v is not None}
        params.update(users=users, duration=duration)
        return self.derive(params, given, processes)

    def derive(self, params: dict[str, Any], given: dict[str, Any], processes: int) -> dict[str, Any]:
        """Computed parameters and checks across parameters (raise ScenarioError)."""
        return params

    def prepare(self, run: ScenarioRun) -> None:
        """Before Locust starts (the fleet is claimed)."""

    def execute(self, run: ScenarioRun, plan: LocustPlan) -> LocustResult:
        """Run Locust (and whatever must happen alongside)."""
        return run_locust(plan)

    def check(self, run: ScenarioRun, figures: Figures, summary: dict[str, Any]) -> dict[str, Check]:
        """The scenario's invariants after the run; may add its own section to ``summary``."""
        return {}


REGISTRY: dict[str, LoadScenario] = {}


def register(cls: type[LoadScenario]) -> type[LoadScenario]:
    if cls.name in REGISTRY:
        raise ValueError(f"load scenario {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> LoadScenario:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; one of {', '.join(REGISTRY)}") from None


def rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
