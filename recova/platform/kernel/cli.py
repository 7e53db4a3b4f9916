"""How a ``recova`` command reaches its app: through the click context, built once.

The root group (``recova.platform.entry.cli``) puts an ``AppLoader`` holding the app
factory on the context; every command, including each domain's group, asks the context
for the app with ``cli_app`` or ``cli_platform``. So a domain's CLI never imports the
entry point, and the app is built only by commands that need one.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from flask import Flask

from recova.platform.kernel.config import ConfigError
from recova.platform.kernel.extension import Platform, platform


class AppLoader:
    """Builds the app on first use and disposes its pool when the command ends."""

    def __init__(self, factory: Callable[[], Flask]) -> None:
        self._factory = factory
        self._app: Flask | None = None

    def load(self) -> Flask:
        if self._app is None:
            try:
                self._app = self._factory()
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
            # Close pooled connections when the command ends, not whenever collected.
            click.get_current_context().call_on_close(platform(self._app).db.dispose)
        return self._app


def cli_app() -> Flask:
    """The app of the running ``recova`` command."""
    loader = click.get_current_context().find_object(AppLoader)
    if loader is None:
        raise click.UsageError("run this command through `recova` (no app loader on the context)")
    return loader.load()


def cli_platform() -> Platform:
    """The platform objects (settings, database, Redis) of the running command's app."""
    return platform(cli_app())
