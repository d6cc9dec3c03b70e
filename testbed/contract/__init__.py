"""The device protocol written once: what the firmware, the service and the host tools agree on.

- :mod:`testbed.contract.device_api`: paths, headers, body fields, limits and defaults,
  identifier patterns, the device credential.
- :mod:`testbed.contract.events`: the firmware's console events, their reasons, the one parser.
- :mod:`testbed.contract.errors`: the error body of every route.
- :mod:`testbed.contract.commands`: the firmware command lines the host types on a board.
- :mod:`testbed.contract.cheader`: generates ``firmware_stubs/src/tb_contract.h`` from the above.

This package imports nothing else from testbed.
"""
