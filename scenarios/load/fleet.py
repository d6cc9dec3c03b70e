"""Scenario (d), a fleet on a compressed schedule: every device syncs once per ``sync_period``.

10,000 devices syncing daily become, at ``sync_period`` = 60 s, a 1440x
compressed day: 167 syncs a second. Each Locust user drives a slice of the
fleet. Run it with ``testbed load run fleet``.
"""

from testbed.load.fleet_user import FleetUser


class Fleet(FleetUser):
    pass
