"""testbed.board: boards under test, in layers (docs/board.md).

- :mod:`testbed.board.protocols`: what a board offers (``Board``, ``CommandRunner``,
  ``EventSource``, ...) and the ``Capability`` it declares;
- :mod:`testbed.board.firmware`: ``FirmwareDriver``, every firmware operation over any
  command runner (``board.firmware``);
- :mod:`testbed.board.console` (with ``console_reader``): the console of any board;
- :mod:`testbed.board.qemu` (with ``qemu_process``, ``qmp``, ``migration``, ``snapshot``):
  the emulated board.
"""
