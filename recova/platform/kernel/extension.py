"""The objects one app owns (settings, database, Redis), reachable from the app or a job."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from recova.platform.kernel.config import Settings
from recova.platform.kernel.crypto import PersonalDataCipher
from recova.platform.kernel.db import Database

if TYPE_CHECKING:
    from redis import Redis
    from sqlalchemy import Connection


@dataclass
class Platform:
    """What ``create_app`` builds and binds; one per app (and so one per process)."""

    settings: Settings
    db: Database
    redis: Redis
    #: What becomes of the outbox's event rows (``recova.platform.kernel.outbox``): set by
    #: the app factory to the webhooks domain's fan-out; None leaves them in the outbox.
    outbox_events: Callable[[Connection, Sequence[Any]], Callable[[], None] | None] | None = None

    @cached_property
    def cipher(self) -> PersonalDataCipher:
        """Encrypts and indexes personal identifiers under the settings' data key."""
        return PersonalDataCipher(self.settings.data_key)

    def init_app(self, app: Flask) -> None:
        app.extensions["recova"] = self


def platform(app: Flask | None = None) -> Platform:
    """The platform objects of ``app`` (default: the current app)."""
    return (app or current_app).extensions["recova"]
