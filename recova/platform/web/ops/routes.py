"""Every section of the operator's pages, imported so their routes are on the blueprint."""

from __future__ import annotations

from flask import Blueprint

from recova.platform.web.ops import agencies, blp, jobs, tenants, users

SECTIONS = (tenants, agencies, users, jobs)


def ops_blueprint() -> Blueprint:
    """The operator pages' blueprint with every section's routes on it."""
    return blp
