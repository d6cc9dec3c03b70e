"""The load scenarios, one module each, registered by name.

- :mod:`.base`: what a scenario is (parameters, preparation, run, checks) and the registry;
- :mod:`.run`: ``run_scenario()``, which drives any of them;
- :mod:`.sizes`, :mod:`.throttling`, :mod:`.deadline`, :mod:`.fleet`, :mod:`.durability`: the scenarios;
- :mod:`.custom`: one's own locustfile on the testbed's fleet and device users.

A scenario's Locust part is a locustfile in ``scenarios/load/``.
"""

from testbed.load.scenarios import custom, deadline, durability, fleet, sizes, throttling  # noqa: F401  (they register)
from testbed.load.scenarios.base import (
           REGISTRY,
           LoadScenario,
           RunOptions,
           ScenarioError,
           get,
           register,
)
from testbed.load.scenarios.run import plan_run, run_scenario

#: name -> scenario, in the order they are listed
SCENARIOS = REGISTRY

__all__ = ["REGISTRY", "SCENARIOS", "LoadScenario", "RunOptions", "ScenarioError", "get", "plan_run", "register",
           "run_scenario"]
