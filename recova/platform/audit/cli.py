"""``recova audit ...``: verify a tenant's chain, print or export its head."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from recova.platform.audit.services import export_daily_head, verify_chain
from recova.platform.kernel.cli import cli_platform
from recova.tenants.scope import tenant_scope


@click.group("audit")
def audit_cli() -> None:
    """A tenant's hash-chained audit log."""


def _objects() -> Any:
    return cli_platform()


@audit_cli.command("verify")
@click.argument("tenant")
@click.option("--head-seq", type=int, default=None, help="A head you kept: its index.")
@click.option("--head-hash", default=None, help="A head you kept: its hash (64 hex digits).")
def verify(tenant: str, head_seq: int | None, head_hash: str | None) -> None:
    """Verify every link of TENANT's chain; exit 1 naming the first broken index."""

    if (head_seq is None) != (head_hash is None):
        raise click.UsageError("give --head-seq and --head-hash together")
    expected = None
    if head_seq is not None and head_hash is not None:
        try:
            expected = (head_seq, bytes.fromhex(head_hash))
        except ValueError as error:
            raise click.BadParameter("not hex", param_hint="--head-hash") from error
    try:
        with tenant_scope(tenant, db=_objects().db) as session:
            verdict = verify_chain(session, expected_head=expected)
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    if verdict.ok:
        click.echo(f"OK {verdict.events} events, head {verdict.head_seq} {verdict.head_hash.hex()}")
        return
    click.echo(
        f"BROKEN at event {verdict.broken_at}: {verdict.problem}"
        f" (verified up to {verdict.head_seq} {verdict.head_hash.hex()})"
    )
    sys.exit(1)


@audit_cli.command("export-head")
@click.argument("tenant")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default=None)
def export_head_command(tenant: str, day: Any) -> None:
    """Record and print TENANT's head for a day (default today, UTC), to keep outside Recova."""

    the_day = day.date() if day else dt.datetime.now(dt.UTC).date()
    try:
        with tenant_scope(tenant, db=_objects().db) as session:
            exported = export_daily_head(session, day=the_day, actor="cli:audit-export-head")
            click.echo(f"{exported.day} {exported.head_seq} {exported.head_hash.hex()}")
    except LookupError as error:
        raise click.ClickException(str(error)) from error
