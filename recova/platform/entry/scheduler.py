"""The periodic-job scheduler: a registry of jobs that run on a schedule, for every tenant.

A ``PeriodicJob`` names a schedule (``daily("16:05")`` in UTC, or ``every(seconds=N)``),
the ``JobSpec`` to enqueue and a *plan*: a function that, for one active tenant and one
due slot, returns the job's deterministic id and its keyword arguments. ``PERIODIC_JOBS``
is the one list of them; adding a job is one line there.

Registered today: the daily days-past-due refresh, the daily promise and plan evaluation
and settlement expiry, the daily allocation, the daily audit head export, the daily
retention erasure, the daily close of the previous month (it refreshes that month's
draft invoice until it is issued), the webhook delivery sweep every minute and the
portal overview's snapshot every 15 minutes, of every active tenant; adding a job is one
line in ``periodic_jobs()``.

**The outbox relay.** Each leader tick first hands to RQ the outbox rows whose publish at
commit failed (Redis away, a process killed between commit and publish), oldest first, for
at most ``RELAY_BUDGET`` seconds, and purges rows published over a week ago (see
``recova.platform.kernel.outbox``).

Never twice, three ways:

1. **One leader.** Each replica tries to hold a Redis lock (redis-py's ``Lock``) with a
   TTL of ``LOCK_TTL`` seconds, renewed every tick; only the holder enqueues. A leader
   that dies or stalls loses the lock when the TTL runs out and a stand-by takes over.
2. **One claim per run.** Before enqueueing, the leader claims the run's job id with
   ``SET NX`` (kept for two periods). Two schedulers that both believe they lead (a stall
   just past the TTL), or a new leader redoing a slot its predecessor half finished, each
   win a run's claim at most once between them.
3. **Deterministic ids.** ``JobSpec.enqueue`` returns the pending job of the same id
   instead of queueing another, and the ids match the ones the API uses
   (``refresh-dpd-<tenant id>-<date>``), so a run requested by hand and the scheduled run
   of the same day are one job.

When a slot is missed (no scheduler ran at 16:05) the next leader runs the latest due
slot at once; older missed slots are not replayed: each periodic job brings its tenant up
to date as of now, so one run catches up.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from redis import RedisError
from redis.lock import Lock
from sqlalchemy import select

from recova.billing.jobs import close_job_id, close_month_job, previous_month
from recova.platform.allocation.jobs import allocate_tenant_job, allocation_job_id
from recova.platform.audit.jobs import export_audit_head_job
from recova.platform.cases.jobs import refresh_days_past_due_job
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import JobSpec
from recova.platform.kernel.outbox import relay_outbox_until_drained
from recova.platform.privacy.jobs import retention_erasure_job
from recova.platform.reports.jobs import refresh_overview_job
from recova.platform.webhooks.jobs import sweep_job_id, sweep_webhook_deliveries_job
from recova.platform.work.jobs import (
    evaluate_promises_job,
    expire_settlements_job,
    expiry_job_id,
    promises_job_id,
)
from recova.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)

LOCK_KEY = "recova:scheduler:leader"
LOCK_TTL = 30  # seconds; a tick renews it, so a tick must be well under this
RELAY_BUDGET = 5.0  # seconds of outbox relaying per tick at most, well under LOCK_TTL


@dataclass(frozen=True)
class Daily:
    """Once a day at ``at`` (UTC)."""

    at: dt.time

    @property
    def period(self) -> dt.timedelta:
        return dt.timedelta(days=1)

    def latest_slot(self, now: dt.datetime) -> dt.datetime:
        """The latest instant at or before ``now`` when this schedule was due."""
        today = dt.datetime.combine(now.date(), self.at, tzinfo=dt.UTC)
        return today if today <= now else today - self.period


@dataclass(frozen=True)
class Every:
    """Every ``seconds``, on multiples of it since the epoch (so every replica agrees)."""

    seconds: int

    @property
    def period(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.seconds)

    def latest_slot(self, now: dt.datetime) -> dt.datetime:
        epoch = int(now.timestamp())
        return dt.datetime.fromtimestamp(epoch - epoch % self.seconds, dt.UTC)


def daily(at: str) -> Daily:
    """A daily schedule at ``HH:MM`` UTC."""
    return Daily(dt.time.fromisoformat(at))


def every(*, seconds: int) -> Every:
    """A schedule every ``seconds`` (at least 10)."""
    if seconds < 10:
        raise ValueError("periodic jobs run at most every 10 seconds")
    return Every(seconds)


@dataclass(frozen=True)
class TenantRun:
    """One due run of a periodic job for one tenant: what a plan gets."""

    tenant_id: int
    slug: str
    timezone: str
    slot: dt.datetime  # when it was due, UTC

    @property
    def local_date(self) -> dt.date:
        """The tenant's calendar date at the slot."""
        return self.slot.astimezone(zoneinfo.ZoneInfo(self.timezone)).date()


Plan = Callable[[TenantRun], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class PeriodicJob:
    """A job enqueued for every active tenant each time its schedule is due."""

    name: str
    schedule: Daily | Every
    job: JobSpec
    plan: Plan


def _refresh_dpd(run: TenantRun) -> tuple[str, dict[str, Any]]:
    as_of = run.local_date.isoformat()
    return f"refresh-dpd-{run.tenant_id}-{as_of}", {"tenant_id": run.tenant_id, "as_of": as_of}


def _allocate(run: TenantRun) -> tuple[str, dict[str, Any]]:
    as_of = run.local_date.isoformat()
    return allocation_job_id(run.tenant_id, as_of), {"tenant_id": run.tenant_id, "as_of": as_of}


def _evaluate_promises(run: TenantRun) -> tuple[str, dict[str, Any]]:
    as_of = run.local_date.isoformat()
    return promises_job_id(run.tenant_id, as_of), {"tenant_id": run.tenant_id, "as_of": as_of}


def _expire_settlements(run: TenantRun) -> tuple[str, dict[str, Any]]:
    as_of = run.local_date.isoformat()
    return expiry_job_id(run.tenant_id, as_of), {"tenant_id": run.tenant_id, "as_of": as_of}


def _audit_head(run: TenantRun) -> tuple[str, dict[str, Any]]:
    # The head as of the end of the tenant's previous day: exported just after midnight.
    day = (run.local_date - dt.timedelta(days=1)).isoformat()
    return f"audit-head-{run.tenant_id}-{day}", {"tenant_id": run.tenant_id, "day": day}


def _retention(run: TenantRun) -> tuple[str, dict[str, Any]]:
    return f"retention-{run.tenant_id}-{run.local_date.isoformat()}", {"tenant_id": run.tenant_id}


def _webhook_sweep(run: TenantRun) -> tuple[str, dict[str, Any]]:
    return sweep_job_id(run.tenant_id, run.slot), {"tenant_id": run.tenant_id}


def _close_month(run: TenantRun) -> tuple[str, dict[str, Any]]:
    month = previous_month(run.local_date).strftime("%Y-%m")
    return close_job_id(run.tenant_id, month), {"tenant_id": run.tenant_id, "month": month}


def _refresh_overview(run: TenantRun) -> tuple[str, dict[str, Any]]:
    # Its own id per slot: the claim is per id, and the page's fixed id may be pending.
    slot = int(run.slot.timestamp())
    return f"overview-{run.tenant_id}-{slot}", {"tenant_id": run.tenant_id}


def periodic_jobs() -> list[PeriodicJob]:
    """Every periodic job, in the order they are enqueued when due together."""

    return [
        # 16:05 UTC is just past midnight in China, where most tenants are, and morning in
        # the Americas: every tenant's local date has turned over by then.
        PeriodicJob("refresh-dpd", daily("16:05"), refresh_days_past_due_job, _refresh_dpd),
        # After the refresh, on the same tenant date; the same job id as "run now".
        PeriodicJob("allocate", daily("16:20"), allocate_tenant_job, _allocate),
        # Between the refresh and the allocation run: broken promises count in the day's
        # scores, and settled cases are recalled by that run.
        PeriodicJob("evaluate-promises", daily("16:10"), evaluate_promises_job, _evaluate_promises),
        PeriodicJob(
            "expire-settlements", daily("16:10"), expire_settlements_job, _expire_settlements
        ),
        PeriodicJob("audit-head", daily("16:10"), export_audit_head_job, _audit_head),
        PeriodicJob("retention", daily("18:00"), retention_erasure_job, _retention),
        # Every day, the month before the tenant's date: late payments of a month join its
        # draft until the invoice is issued; after that a re-run changes nothing.
        PeriodicJob("close-month", daily("16:40"), close_month_job, _close_month),
        # Webhook deliveries that are due and that no job is sending (a lost job, a worker
        # killed mid-delivery): see ``recova.platform.webhooks.delivery``.
        PeriodicJob(
            "webhook-sweep", every(seconds=60), sweep_webhook_deliveries_job, _webhook_sweep
        ),
        # The portal overview's snapshot (its figures read the whole book).
        PeriodicJob(
            "overview-refresh", every(seconds=900), refresh_overview_job, _refresh_overview
        ),
    ]


class Scheduler:
    """One scheduler replica: leads when it holds the lock, and enqueues what is due."""

    def __init__(
        self,
        objects: Platform,
        jobs: Sequence[PeriodicJob],
        *,
        lock_ttl: int = LOCK_TTL,
        identity: str | None = None,
    ) -> None:
        self.objects = objects
        self.jobs = list(jobs)
        # Stored as the lock's value, so `GET <prefix>recova:scheduler:leader` names the leader.
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        prefix = objects.settings.queue_prefix
        self._prefix = prefix
        self._lock = Lock(objects.redis, prefix + LOCK_KEY, timeout=lock_ttl, thread_local=False)
        self.leading = False

    # -- leadership --------------------------------------------------------------------

    def hold_leadership(self) -> bool:
        """Take or renew the leader lock; False while another replica holds it."""
        try:
            if self.leading and self._lock.owned():
                self._lock.reacquire()  # back to a full TTL
            else:
                if self.leading:
                    logger.warning("scheduler %s lost the leader lock", self.identity)
                self.leading = bool(self._lock.acquire(blocking=False, token=self.identity))
                if self.leading:
                    logger.info("scheduler %s is the leader", self.identity)
        except RedisError as exc:
            logger.warning("scheduler lock unavailable: %s", type(exc).__name__)
            self.leading = False
        return self.leading

    def step_down(self) -> None:
        """Release the lock (at shutdown), so a stand-by takes over at once."""
        if self.leading:
            try:
                self._lock.release()
            except RedisError as exc:  # it expires on its own
                logger.warning("could not release the scheduler lock: %s", type(exc).__name__)
            self.leading = False

    # -- enqueueing --------------------------------------------------------------------

    def tick(self, now: dt.datetime | None = None) -> list[str]:
        """If leading, relay the outbox, then enqueue every run that is due and not yet
        claimed; the job ids of those runs."""
        if not self.hold_leadership():
            return []
        self.relay_outbox()
        return self.enqueue_due(now or dt.datetime.now(dt.UTC))

    def relay_outbox(self) -> int:
        """Hand the outbox rows that missed their publish at commit to RQ (the leader's
        job, so one relay runs at a time; ``SKIP LOCKED`` keeps even two apart)."""
        published = relay_outbox_until_drained(self.objects, budget=RELAY_BUDGET)
        if published:
            logger.info("outbox relay published %d jobs", published)
        return published

    def enqueue_due(self, now: dt.datetime) -> list[str]:
        """Enqueue the latest due slot of each job for every active tenant, each run once
        across all replicas (the claim); returns the job ids this call enqueued."""
        enqueued: list[str] = []
        tenants: list[tuple[int, str, str]] | None = None
        for periodic in self.jobs:
            slot = periodic.schedule.latest_slot(now)
            done_key = f"{self._prefix}recova:scheduler:done:{periodic.name}"
            if self.objects.redis.get(done_key) == slot.isoformat().encode():
                continue
            if tenants is None:
                tenants = self._active_tenants()
            claim_ttl = max(int(periodic.schedule.period.total_seconds()) * 2, 3600)
            for tenant_id, slug, timezone in tenants:
                run = TenantRun(tenant_id=tenant_id, slug=slug, timezone=timezone, slot=slot)
                job_id, kwargs = periodic.plan(run)
                if self._enqueue_once(periodic, job_id, kwargs, claim_ttl):
                    enqueued.append(job_id)
            self.objects.redis.set(done_key, slot.isoformat(), ex=claim_ttl)
            logger.info(
                "periodic job %s due %s: %d tenants", periodic.name, slot.isoformat(), len(tenants)
            )
        return enqueued

    def _enqueue_once(
        self, periodic: PeriodicJob, job_id: str, kwargs: dict[str, Any], claim_ttl: int
    ) -> bool:
        claim = f"{self._prefix}recova:scheduler:claimed:{job_id}"
        if not self.objects.redis.set(claim, self.identity, nx=True, ex=claim_ttl):
            return False  # another replica (or an earlier leader) has it
        try:
            periodic.job.enqueue(self.objects, job_id=job_id, **kwargs)
        except BaseException:
            self.objects.redis.delete(claim)  # not handed over: let the next tick retry it
            raise
        return True

    def _active_tenants(self) -> list[tuple[int, str, str]]:
        with self.objects.db.session() as session:
            rows = session.execute(
                select(Tenant.id, Tenant.slug, Tenant.timezone)
                .where(Tenant.status == TenantStatus.ACTIVE)
                .order_by(Tenant.id)
            ).all()
        return [(row.id, row.slug, row.timezone) for row in rows]


def run_scheduler(
    app: Flask,
    *,
    tick: float = 5.0,
    once: bool = False,
    jobs: Sequence[PeriodicJob] | None = None,
) -> None:
    """Run a scheduler replica until SIGTERM or SIGINT (or one check with ``once``)."""
    if not 0 < tick <= LOCK_TTL / 3:
        raise ValueError(f"tick must be between 0 and {LOCK_TTL / 3} seconds")
    scheduler = Scheduler(platform(app), periodic_jobs() if jobs is None else jobs)
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stop)
    logger.info(
        "scheduler %s: %s", scheduler.identity, ", ".join(job.name for job in scheduler.jobs)
    )
    try:
        while True:
            try:
                scheduler.tick()
            except (RedisError, OSError) as exc:  # a dependency blinked; try again next tick
                logger.warning("scheduler tick failed: %s", type(exc).__name__)
            except Exception:
                logger.exception("scheduler tick failed")
            if once or stop.wait(tick):
                break
    finally:
        scheduler.step_down()
