"""The image builder's error type (its own module so the builder's parts can share it)."""


class ImageError(Exception):
    """The image cannot be built; the message says why and what to do."""
