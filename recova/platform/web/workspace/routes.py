"""Every section of the agency workspace, imported so their routes are on the blueprint."""

from __future__ import annotations

from flask import Blueprint

from recova.platform.web.workspace import (
    actions,
    approvals,
    assignment,
    blp,
    case,
    placements,
    queue,
    team,
)

SECTIONS = (queue, case, actions, team, assignment, approvals, placements)


def workspace_blueprint() -> Blueprint:
    """The workspace's blueprint with every section's routes on it."""
    return blp
