"""The ``recova`` command: demo, serve, worker, scheduler, migrate, tenants, keys, ingest,
allocate, billing."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask

from recova.billing.exports import write_month_exports
from recova.billing.invoices import BillingError, close_month
from recova.connectors.models import IngestionRun, RunMode, RunStatus
from recova.connectors.services import IngestionError, ingest_local_file, row_errors_csv
from recova.platform.allocation.services import allocation_summary, run_allocation
from recova.platform.audit.cli import audit_cli
from recova.platform.compliance.cli import compliance_cli
from recova.platform.contact.demo import demo_contact_day
from recova.platform.entry.app import create_app
from recova.platform.entry.demo import (
    DEMO_BOOK_DATE,
    DEMO_PASSWORD,
    TENANTS,
    allocate_demo,
    bill_demo,
    deliver_demo_events,
    demo_receiver_secrets,
    limit_demo_discounts,
    load_demo_portfolios,
    register_demo_receiver,
    seed_demo,
)
from recova.platform.entry.scheduler import run_scheduler
from recova.platform.entry.worker import run_worker
from recova.platform.kernel.cli import AppLoader, cli_app, cli_platform
from recova.platform.kernel.config import new_secrets
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import QUEUES
from recova.platform.privacy.cli import privacy_cli
from recova.platform.web.cli import i18n_cli
from recova.platform.webhooks.demo_receiver import DemoReceiver
from recova.platform.work.cli import work_cli
from recova.platform.work.demo import demo_case_work
from recova.platform.work.demo_desk import demo_desk
from recova.tenants.migrate import migrate_all, migrate_shared
from recova.tenants.models import TenantStatus
from recova.tenants.scope import tenant_scope
from recova.tenants.services import (
    TenantError,
    get_tenant,
    list_tenants,
    provision_tenant,
    set_tenant_status,
)


def _exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so exit handlers run (embedded servers shut down)."""

    def _handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Recova: multi-tenant third-party debt collection."""
    ctx.obj = AppLoader(create_app)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--serve/--no-serve", default=True, help="Seed and print logins, then exit.")
@click.option(
    "--receiver-port",
    default=5001,
    show_default=True,
    type=int,
    help="Port of the demo's webhook receiver on 127.0.0.1 (a free one if it is taken).",
)
def demo(host: str, port: int, serve: bool, receiver_port: int) -> None:
    """Start the services, migrate, seed demo data, print logins, serve app and worker."""

    _exit_cleanly_on_sigterm()
    app = cli_app()
    objects = platform(app)
    if objects.settings.production:
        raise click.ClickException("the demo seeds known passwords; it refuses production mode")
    # The demo's receiver is on loopback: this app (and its worker, below) may reach
    # private hosts, as RECOVA_HTTP_SOURCES_ALLOW_PRIVATE=1 would; nothing else changes.
    objects.settings = dataclasses.replace(objects.settings, http_sources_allow_private=True)
    report = migrate_all(objects.db.engine)
    if report.failed:
        raise click.ClickException(f"migration failed for {[r.slug for r in report.failed]}")
    logins = seed_demo(objects.db)
    slugs = [spec["slug"] for spec in TENANTS]
    receiver = _start_demo_receiver(objects, slugs, receiver_port)
    hooks = register_demo_receiver(objects, receiver, slugs)
    click.echo("Loading the demo lenders' portfolios and payments ...")
    for load in load_demo_portfolios(objects, objects.settings.home / "demo"):
        click.echo(
            f"  {load.tenant:<10} {load.file:<26} {load.status}: {load.received} rows,"
            f" {load.inserted} inserted, {load.updated} updated, {load.unchanged} unchanged,"
            f" {load.rejected} rejected"
        )
    click.echo("Placing the demo lenders' cases with the agencies and their collectors ...")
    for slug, summary in allocate_demo(objects):
        click.echo(f"  {slug:<10} {summary}")
    click.echo("Working yesterday's calls through the compliance gate ...")
    for slug, summary in demo_contact_day(objects, [spec["slug"] for spec in TENANTS]):
        click.echo(f"  {slug:<10} {summary}")
    click.echo("Recording the collectors' promises, plans and settlement offers ...")
    for slug, summary in demo_case_work(objects.db, [spec["slug"] for spec in TENANTS]):
        click.echo(f"  {slug:<10} {summary}")
    click.echo("Filling every collector's desk for today on each lender's calendar ...")
    limit_demo_discounts(app, slugs)
    for slug, summary in demo_desk(objects, slugs, folder=objects.settings.home / "demo"):
        click.echo(f"  {slug:<10} {summary}")
    click.echo(f"Closing {DEMO_BOOK_DATE:%B %Y} for the demo lenders ...")
    for bill in bill_demo(objects, objects.settings.home / "demo" / "invoices"):
        click.echo(
            f"  {bill.tenant:<10} invoice {bill.number} ({bill.status}) {bill.lines} lines,"
            f" total {bill.total} {bill.currency}: {bill.pdf}"
        )
    click.echo(
        f"Delivering the demo's webhooks to the receiver at {receiver.base_url}"
        " (private hosts allowed for the demo only) ..."
    )
    for delivered in deliver_demo_events(objects, hooks):
        click.echo(f"  {delivered.tenant:<10} {delivered.line()}")
    base = f"http://{host}:{port}"
    click.echo("Recova demo is ready.\n")
    click.echo(f"  Portal login   {base}/login")
    click.echo(f"  API docs       {base}/api/v1/docs")
    click.echo(f"  OpenAPI        {base}/api/v1/openapi.json")
    click.echo(f"  Webhooks       {receiver.base_url}/hooks/<tenant> (a receiver verifying each")
    click.echo("                 delivery; each lender's portal lists them under Webhooks)")
    click.echo(f"  Data folder    {objects.settings.home}\n")
    click.echo(f"  Every demo login uses the password: {DEMO_PASSWORD}")
    for login in logins:
        click.echo(
            f"    {login.email:<38} {login.role:<15} {login.organisation:<22}"
            f" {base}{login.portal_path}"
        )
    click.echo(
        "\n  Partner API: sign in as a tenant admin and POST /api/v1/api-clients,"
        f"\n  then exchange the client id and secret at {base}/oauth/token."
    )
    if not serve:
        receiver.stop()
        return
    _serve_demo(app, host, port, receiver)


def _serve_demo(app: Flask, host: str, port: int, receiver: DemoReceiver) -> None:
    """Serve the demo's app with a worker and the scheduler beside it, until Ctrl-C."""
    env = {**os.environ, "RECOVA_HTTP_SOURCES_ALLOW_PRIVATE": "1"}
    # The worker runs the jobs; the scheduler relays the outbox (events written in bulk,
    # jobs whose immediate publish missed), retries webhooks and runs the periodic jobs.
    # The commands are this program's own, with fixed arguments.
    helpers = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "recova.platform.entry.cli", command], env=env
        )
        for command in ("worker", "scheduler")
    ]
    click.echo(
        "\nServing (Ctrl-C to stop) with one RQ worker, the scheduler and the webhook receiver."
    )
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            helper.wait(timeout=60)
        receiver.stop()


def _start_demo_receiver(objects: Platform, slugs: list[str], port: int) -> DemoReceiver:
    """The demo's webhook receiver on 127.0.0.1:``port``, or a free port if it is taken."""
    secrets_for = demo_receiver_secrets(objects, slugs)
    try:
        return DemoReceiver(secrets_for, port=port).start()
    except OSError:
        receiver = DemoReceiver(secrets_for, port=0).start()
        click.echo(f"Port {port} is taken; the webhook receiver listens at {receiver.base_url}.")
        return receiver


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the app with Werkzeug's threaded server (use gunicorn wsgi:app in production)."""
    _exit_cleanly_on_sigterm()
    cli_app().run(host=host, port=port, threaded=True, use_reloader=False)


@main.command()
@click.option("--queues", default=None, help="Comma-separated queues (default: all).")
@click.option("--burst", is_flag=True, help="Stop once the queues are empty.")
@click.option(
    "--metrics-port",
    default=0,
    type=int,
    envvar="RECOVA_WORKER_METRICS_PORT",
    show_default=True,
    help="Serve this worker's job metrics on this port (0: off).",
)
def worker(queues: str | None, burst: bool, metrics_port: int) -> None:
    """Run an RQ worker for the named queues; SIGTERM lets the running job finish."""

    _exit_cleanly_on_sigterm()
    names = [q.strip() for q in queues.split(",")] if queues else list(QUEUES)
    unknown = sorted(set(names) - set(QUEUES))
    if unknown:
        raise click.ClickException(f"unknown queues {unknown}; known: {', '.join(QUEUES)}")
    run_worker(cli_app(), names, burst=burst, metrics_port=metrics_port)


@main.command()
@click.option("--tick", default=5.0, show_default=True, type=float, help="Seconds between checks.")
@click.option("--once", is_flag=True, help="Check once (enqueue what is due) and exit.")
def scheduler(tick: float, once: bool) -> None:
    """Enqueue the periodic jobs when due; one replica leads, the others stand by."""

    _exit_cleanly_on_sigterm()
    run_scheduler(cli_app(), tick=tick, once=once)


@main.command()
@click.option("--tenant", "tenants", multiple=True, help="Only this tenant (repeatable).")
@click.option("--jobs", default=4, show_default=True, type=int, help="Tenants in parallel.")
def migrate(tenants: tuple[str, ...], jobs: int) -> None:
    """Upgrade the shared schema, then every tenant schema, reporting each tenant."""

    app = cli_app()
    report = migrate_all(platform(app).db.engine, slugs=list(tenants) or None, jobs=jobs)
    click.echo(f"shared schema at {report.shared_head}; tenant head {report.tenant_head}")
    for result in report.results:
        if not result.ok:
            click.echo(f"  FAILED   {result.slug:<30} at {result.before}: {result.error}")
        elif result.changed:
            click.echo(f"  upgraded {result.slug:<30} {result.before} -> {result.after}")
    current = len(report.results) - len(report.upgraded) - len(report.failed)
    click.echo(
        f"{len(report.upgraded)} upgraded, {current} already current,"
        f" {len(report.failed)} failed, of {len(report.results)} tenants"
    )
    if report.failed:
        sys.exit(1)


@main.group()
def tenants() -> None:
    """Create, list and disable tenants."""


@tenants.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--jurisdiction", type=click.Choice(["CN", "US"]), required=True)
@click.option("--timezone", required=True, help="IANA time zone, e.g. Asia/Shanghai")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. CNY")
def tenants_create(slug: str, name: str, jurisdiction: str, timezone: str, currency: str) -> None:
    """Provision a tenant: its row, its schema and its tables, in one transaction."""

    db = cli_platform().db
    migrate_shared(db.engine)
    session = db.session()
    try:
        tenant = provision_tenant(
            session,
            slug=slug,
            name=name,
            jurisdiction=jurisdiction,
            timezone=timezone,
            currency=currency,
        )
        session.commit()
    except TenantError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from exc
    finally:
        session.close()
    click.echo(f"created tenant {tenant.slug} in schema {tenant.schema_name}")


@tenants.command("list")
def tenants_list() -> None:
    """List tenants with their schema and status."""

    with cli_platform().db.session() as session:
        rows = list_tenants(session)
    for tenant in rows:
        click.echo(
            f"{tenant.slug:<30} {tenant.schema_name:<36} {tenant.status.value:<9}"
            f" {tenant.jurisdiction.value} {tenant.currency} {tenant.timezone}"
        )
    click.echo(f"{len(rows)} tenants")


@tenants.command("disable")
@click.argument("slug")
def tenants_disable(slug: str) -> None:
    """Disable a tenant: its users and API clients are refused from the next request on."""

    with cli_platform().db.session() as session:
        tenant = get_tenant(session, slug)
        if tenant is None:
            raise click.ClickException(f"no tenant {slug!r}")
        set_tenant_status(session, tenant, TenantStatus.DISABLED)
        session.commit()
    click.echo(f"disabled tenant {slug}")


@main.command()
@click.argument("tenant")
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="The run date (default: today on the tenant's calendar).",
)
@click.option("--dry-run", is_flag=True, help="Show where cases would go; change nothing.")
def allocate(tenant: str, as_of: Any, dry_run: bool) -> None:
    """Segment, score, recall, place and assign TENANT's cases (the daily run, here)."""

    objects = cli_platform()
    try:
        result = run_allocation(
            objects.db,
            tenant=tenant,
            as_of=as_of.date() if as_of else None,
            dry_run=dry_run,
            on_progress=lambda step, done, total: click.echo(f"  {step:<8} {done}/{total}"),
        )
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    for step, counts in result.counts.items():
        figures = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int))
        click.echo(f"{step:<8} {figures}")
    if dry_run:
        click.echo(
            f"dry run as of {result.as_of} (strategy version"
            f" {result.strategy_version_id}); nothing was changed:"
        )
        for line in result.lines:
            click.echo(
                f"  {line['segment']:<12} {line['arm'] or '-':<12}"
                f" {line['agency_id'] if line['agency_id'] is not None else '-':<8}"
                f" {line['outcome']:<18} {line['cases']:>8} cases {line['balance']:>16}"
            )
        return
    with tenant_scope(result.tenant, db=objects.db) as session:
        summary = allocation_summary(session)
    click.echo(f"run {result.run_id} as of {result.as_of}: {summary.line()}")


@main.command()
def keys() -> None:
    """Print fresh values for SECRET_KEY and RECOVA_DATA_KEY (for production secrets)."""

    for name, value in new_secrets().items():
        click.echo(f"{name}={value}")


@main.command()
@click.argument("tenant")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mapping", "mapping_name", required=True, help="The tenant's mapping name.")
@click.option(
    "--mode", type=click.Choice(["delta", "snapshot"]), default="delta", show_default=True
)
@click.option("--all-or-nothing", is_flag=True, help="Load nothing if any row is rejected.")
@click.option("--connector", default=None, help="csv, xlsx or jsonl (default: by extension).")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--background", is_flag=True, help="Queue the run for a worker and return.")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rejected rows and the warnings (a severity column) to this CSV.",
)
@click.option(
    "--confirm-recall",
    is_flag=True,
    help="A snapshot may recall more of the open book than the tenant's recall guard allows.",
)
def ingest(  # noqa: PLR0917 - click passes each option positionally
    tenant: str,
    file: Path,
    mapping_name: str,
    mode: str,
    all_or_nothing: bool,
    connector: str | None,
    as_of: Any,
    background: bool,
    errors_path: Path | None,
    confirm_recall: bool,
) -> None:
    """Load a portfolio or payment FILE into TENANT through a saved mapping.

    Exit status: 0 loaded, 2 loaded with rejected rows (see --errors), 1 failed or held
    (a snapshot that would recall more than the recall guard allows: send it again with
    --confirm-recall if the file is complete).
    """

    objects = cli_platform()
    try:
        slug, run_id = ingest_local_file(
            objects,
            tenant_slug=tenant,
            path=file,
            mapping_name=mapping_name,
            mode=RunMode(mode),
            all_or_nothing=all_or_nothing,
            connector=connector,
            as_of=as_of.date() if as_of else None,
            background=background,
            confirm_recall=confirm_recall,
        )
    except IngestionError as error:
        raise click.ClickException(error.message) from error
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    with tenant_scope(slug, db=objects.db) as session:
        run = session.get(IngestionRun, run_id)
        assert run is not None
        if background:
            click.echo(f"run {run.id} queued as job {run.job_id}")
            return
        click.echo(
            f"run {run.id} {run.status.value}: {run.received} rows read, {run.inserted} inserted,"
            f" {run.updated} updated, {run.unchanged} unchanged, {run.rejected} rejected,"
            f" {run.warnings} with warnings, {run.recalled} recalled"
        )
        if run.message:
            click.echo(run.message)
        if errors_path is not None and (run.rejected or run.warnings):
            with errors_path.open("w", encoding="utf-8", newline="") as out:
                out.writelines(row_errors_csv(session, run))
            click.echo(f"row errors written to {errors_path}")
        status, rejected = run.status, run.rejected
    if status is not RunStatus.COMPLETED:
        sys.exit(1)
    if rejected:
        sys.exit(2)


def _register_domain_commands() -> None:
    main.add_command(audit_cli)
    main.add_command(privacy_cli)
    main.add_command(work_cli)
    main.add_command(compliance_cli)
    main.add_command(i18n_cli)


_register_domain_commands()


@main.group()
def billing() -> None:
    """Month close, invoices and exports."""


@billing.command("close")
@click.argument("tenant")
@click.option("--month", required=True, help="The month to close, YYYY-MM.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write each invoice's CSV and PDF into this folder.",
)
@click.option("--preview", is_flag=True, help="Compute the invoices and change nothing.")
def billing_close(tenant: str, month: str, out: Path | None, preview: bool) -> None:
    """Close MONTH for TENANT: ledger lines, invoices and agency statements (re-runnable)."""

    objects = cli_platform()
    try:
        result = close_month(objects.db, tenant=tenant, month=month, dry_run=preview)
    except (BillingError, LookupError) as error:
        raise click.ClickException(str(error)) from error
    counts = result.counts
    click.echo(
        f"{result.tenant} {result.month:%Y-%m}: {counts.get('commission_lines', 0)} commission"
        f" and {counts.get('clawback_lines', 0)} clawback lines written,"
        f" {counts.get('unpriced_payments', 0)} payments with no contract version"
        + (" (preview: nothing was changed)" if preview else "")
    )
    for invoice in result.invoices:
        click.echo(
            f"  invoice {invoice['number'] if not preview else '-'} {invoice['currency']}"
            f" {invoice['status']}: {invoice['line_count']} lines, commission"
            f" {invoice['commission_total']}, top-up {invoice['top_up']}, VAT {invoice['vat']},"
            f" total {invoice['total']}"
        )
    if out is not None and not preview:
        for path in write_month_exports(objects.db, tenant=tenant, month=result.month, folder=out):
            click.echo(f"  wrote {path}")


if __name__ == "__main__":
    main()
