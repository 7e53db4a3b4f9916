"""What case-work services raise; each says the one status code the API answers with."""

from __future__ import annotations

from recova.platform.kernel.errors import DomainError


class WorkConflict(DomainError):
    """The request contradicts the case's state (409): a pending promise, an open offer."""

    status = 409


class WorkInvalid(DomainError, ValueError):
    """The request itself is wrong whatever the state (422): a date in the past."""


class NotPermitted(DomainError):
    """The caller's role or limit does not cover the request (403)."""

    status = 403


class WorkNotFound(DomainError, LookupError):
    """What the request names is not there (404): a plan's instalment of that number."""

    status = 404
