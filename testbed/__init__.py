"""testbed: an end-to-end emulation testbed for a device crash-dump pipeline."""

__version__ = "0.1.0"
