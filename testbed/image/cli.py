"""`testbed image ...`: build the board image and manage its lock file."""

from __future__ import annotations

import time

import click

from testbed.image.build import ImageError, ensure_image, update_lock


def _progress(message: str) -> None:
    click.echo(f"[image] {message}", err=True)


@click.group()
def image() -> None:
    """Build the board image (pinned Debian armhf kernel + busybox + firmware stubs)."""


@image.command()
@click.option("--force", is_flag=True, help="Rebuild even if the cache holds this image.")
@click.option("--json", "as_json", is_flag=True, help="Print the image's metadata as JSON.")
def build(force: bool, as_json: bool) -> None:
    """Build the image into the cache (nothing is rebuilt when no source changed)."""
    started = time.monotonic()
    try:
        img = ensure_image(force=force, progress=_progress)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        import json

        click.echo(json.dumps({"path": str(img.path), **img.meta}, indent=2))
    else:
        click.echo(f"image {img.hash} (kernel {img.kernel_version}) ready in "
                   f"{time.monotonic() - started:.2f} s: {img.path}")


@image.command()
@click.option("--update", is_flag=True, required=True, help="Pin the mirror's current versions.")
def lock(update: bool) -> None:
    """Refresh images/packages.lock from the mirror (versions and sha256)."""
    try:
        rows = update_lock(progress=_progress)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    for package, old, new in rows:
        change = "unchanged" if old == new else f"{old or '(new)'} -> {new}"
        click.echo(f"{package:32} {new:28} {change}")
    click.echo("wrote images/packages.lock; `testbed image build` rebuilds the image")
