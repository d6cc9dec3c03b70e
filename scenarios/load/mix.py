"""Uploads of the whole size mix, each crash a new bug: the durability scenario and the ingest benchmark.

``params.intent`` (default true) asks intent first; ``params.journal``
records every acknowledged upload (201) in the output directory.
"""

from testbed.load.users import MixDevice


class Device(MixDevice):
    pass
