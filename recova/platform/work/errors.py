"""What case-work services raise; the API maps each to one status code."""

from __future__ import annotations


class WorkConflict(Exception):
    """The request contradicts the case's state (409): a pending promise, an open offer."""


class WorkInvalid(ValueError):
    """The request itself is wrong whatever the state (422): a date in the past."""


class NotPermitted(Exception):
    """The caller's role or limit does not cover the request (403)."""
