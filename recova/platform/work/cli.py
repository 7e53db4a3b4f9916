"""``recova work ...``: the daily promise, plan and settlement evaluation, and settings."""

from __future__ import annotations

from typing import Any

import click
from marshmallow import ValidationError

from recova.platform.kernel.cli import cli_platform
from recova.platform.work.evaluation import evaluate_due_work
from recova.platform.work.jobs import DAILY_ACTOR, EXPIRY_ACTOR
from recova.platform.work.schemas import WorkSettingsSchema
from recova.platform.work.settings import DEFAULTS, change_settings, current_settings
from recova.platform.work.settlements import expire_settlements
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope


@click.group("work")
def work_cli() -> None:
    """Case work: the daily promise, plan and settlement evaluation, and its settings."""


def _objects() -> Any:
    return cli_platform()


def _work_day(tenant: str, as_of: Any) -> tuple[Any, Any]:
    return _objects(), as_of.date() if as_of else None


_AS_OF = click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="The evaluation date (default: today on the tenant's calendar).",
)


@work_cli.command("evaluate-promises")
@click.argument("tenant")
@_AS_OF
def work_evaluate_promises(tenant: str, as_of: Any) -> None:
    """Judge TENANT's promises past their grace period and its active plans (the daily job)."""

    objects, day = _work_day(tenant, as_of)
    try:
        with tenant_scope(tenant, db=objects.db) as session:
            found = session.info["tenant"]
            day = day or tenant_today(found.timezone)
            counts = evaluate_due_work(
                session, today=day, timezone=found.timezone, actor=DAILY_ACTOR
            )
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    promises, plans = counts["promises"], counts["plans"]
    click.echo(
        f"as of {day}: promises {promises['kept']} kept, {promises['partly_kept']} partly kept,"
        f" {promises['broken']} broken; plans {plans['missed']} instalments missed,"
        f" {plans['completed']} completed, {plans['broken']} broken"
    )


@work_cli.command("expire-settlements")
@click.argument("tenant")
@_AS_OF
def work_expire_settlements(tenant: str, as_of: Any) -> None:
    """Expire TENANT's settlement offers past their date (paid ones settle the case)."""

    objects, day = _work_day(tenant, as_of)
    try:
        with tenant_scope(tenant, db=objects.db) as session:
            found = session.info["tenant"]
            day = day or tenant_today(found.timezone)
            counts = expire_settlements(
                session, today=day, timezone=found.timezone, actor=EXPIRY_ACTOR
            )
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"as of {day}: {counts['expired']} offers expired, {counts['paid']} paid")


@work_cli.command("settings")
@click.argument("tenant")
@click.option("--set", "changes", multiple=True, metavar="NAME=DAYS", help="Change a setting.")
def work_settings(tenant: str, changes: tuple[str, ...]) -> None:
    """Show (or change with --set) TENANT's grace days, plan and deferral limits."""

    parsed: dict[str, int] = {}
    for change in changes:
        name, _, value = change.partition("=")
        if name not in DEFAULTS or not value.isdigit():
            known = ", ".join(DEFAULTS)
            raise click.ClickException(f"--set takes NAME=DAYS with NAME one of: {known}")
        parsed[name] = int(value)
    try:
        parsed = WorkSettingsSchema().load(parsed)  # the API's ranges
    except ValidationError as error:
        raise click.ClickException(f"invalid settings: {error.messages}") from error
    objects = _objects()
    try:
        with tenant_scope(tenant, db=objects.db) as session:
            if parsed:
                change_settings(session, actor="cli:work-settings", **parsed)
            found = current_settings(session)
            for name in DEFAULTS:
                click.echo(f"{name:<22} {getattr(found, name)}")
    except LookupError as error:
        raise click.ClickException(str(error)) from error
