"""The operator's background jobs: per queue the jobs queued, running, failed and
scheduled; the running jobs; the failed ones with their error, to retry or delete; and
the outbox rows not yet handed to RQ. The figures come from
``recova.platform.kernel.job_board`` (RQ's registries of this platform's queues, under
``RECOVA_QUEUE_PREFIX``); the counts and running jobs refresh themselves while the page is
open (htmx), and the page works without it.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import HiddenField
from wtforms.validators import DataRequired

from recova.platform.kernel import job_board
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import QUEUES
from recova.platform.kernel.request_scope import db_session
from recova.platform.web.ops import blp
from recova.platform.web.ops.common import OPS_TIMEZONE, ops_page


class FailedJobForm(FlaskForm):
    queue = HiddenField(validators=[DataRequired()])
    job_id = HiddenField(validators=[DataRequired()])


def _where() -> dict[str, Any]:
    objects = platform()
    return {"redis": objects.redis, "prefix": objects.settings.queue_prefix}


def _board() -> dict[str, Any]:
    counts = job_board.queue_counts(**_where())
    return {
        "counts": counts,
        "totals": {
            state: sum(getattr(row, state) for row in counts)
            for state in ("queued", "started", "failed", "scheduled")
        },
        "running": job_board.running_jobs(**_where()),
        "outbox": job_board.outbox_backlog(db_session()),
        "tz": OPS_TIMEZONE,
    }


@blp.get("/jobs")
@ops_page
def jobs() -> str:
    """Every queue's counts, the running jobs, the failed jobs with their errors."""
    return render_template(
        "ops/jobs/index.html",
        **_board(),
        failed=job_board.failed_jobs(**_where()),
        limit=job_board.LIMIT,
        form=FailedJobForm(formdata=None),
    )


@blp.get("/jobs/live")
@ops_page
def jobs_live() -> str:
    """The counts and running jobs alone (htmx polls them)."""
    return render_template("ops/jobs/_board.html", **_board())


def _failed_job() -> tuple[str, str] | None:
    form = FailedJobForm()
    if not form.validate_on_submit() or form.queue.data not in QUEUES:
        return None
    return form.queue.data, form.job_id.data or ""


@blp.post("/jobs/retry")
@ops_page
def jobs_retry() -> Response:
    """Put a failed job back on its queue; a worker runs it again."""
    found = _failed_job()
    if found and job_board.retry_failed_job(**_where(), queue=found[0], job_id=found[1]):
        flash(
            _("Job %(id)s is back on the %(queue)s queue.", id=found[1], queue=found[0]), "success"
        )
    else:
        flash(_("That job is no longer among the failed jobs."), "error")
    return redirect(url_for("ops.jobs"))


@blp.post("/jobs/delete")
@ops_page
def jobs_delete() -> Response:
    """Delete a failed job and its record; it will not run again."""
    found = _failed_job()
    if found and job_board.delete_failed_job(**_where(), queue=found[0], job_id=found[1]):
        flash(_("Job %(id)s is deleted.", id=found[1]), "success")
    else:
        flash(_("That job is no longer among the failed jobs."), "error")
    return redirect(url_for("ops.jobs"))
