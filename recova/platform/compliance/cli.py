"""``recova compliance ...``: show and tighten a tenant's policy, simulate a schedule."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from marshmallow import ValidationError

from recova.platform.compliance.api import policy_view
from recova.platform.compliance.policy import PolicyError, save_policy
from recova.platform.compliance.schemas import ProposedAttemptSchema
from recova.platform.compliance.simulate import ProposedAttempt, simulate_schedule
from recova.platform.kernel.cli import cli_platform
from recova.tenants.scope import tenant_scope

CLI_ACTOR = "cli:compliance"


@click.group("compliance")
def compliance_cli() -> None:
    """A tenant's compliance policy and the contact gate."""


def _objects() -> Any:
    return cli_platform()


def _echo_policy(view: dict[str, Any]) -> None:
    click.echo(f"pack {view['pack_version']}: {view['pack_title']}")
    click.echo(f"tenant version {view['version_id'] or '-'}, overrides {view['overrides'] or {}}")
    for name, value in view["rules"].items():
        base = view["pack_rules"][name]
        note = "" if value == base else f"  (pack: {base})"
        click.echo(f"  {name:<42} {value}{note}")


@compliance_cli.command("show")
@click.argument("tenant")
def show(tenant: str) -> None:
    """Print the rules binding TENANT now: its pack version, tightened by its policy."""

    try:
        with tenant_scope(tenant, db=_objects().db) as session:
            _echo_policy(policy_view(session, session.info["tenant"].jurisdiction.value))
    except LookupError as error:
        raise click.ClickException(str(error)) from error


@compliance_cli.command("set")
@click.argument("tenant")
@click.argument("rules", nargs=-1, required=True)
@click.option(
    "--effective-from",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]),
    default=None,
    help="When the version takes effect, with its offset (default: now).",
)
def set_policy(tenant: str, rules: tuple[str, ...], effective_from: Any) -> None:
    """Tighten TENANT's pack with RULES given as name=value (e.g. window_end=21:00
    max_connected_calls_per_day=2); a loosening is refused, naming the rule."""

    overrides: dict[str, Any] = {}
    for item in rules:
        name, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not name=value", param_hint="RULES")
        try:
            overrides[name] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[name] = raw  # times such as 21:00 are plain text
    try:
        with tenant_scope(tenant, db=_objects().db) as session:
            jurisdiction = session.info["tenant"].jurisdiction.value
            version = save_policy(
                session,
                jurisdiction=jurisdiction,
                overrides=overrides,
                effective_from=effective_from,
                actor=CLI_ACTOR,
            )
            click.echo(f"saved policy version {version.id} from {version.effective_from}")
            _echo_policy(policy_view(session, jurisdiction))
    except PolicyError as error:
        raise click.ClickException(f"refused: {error}") from error
    except LookupError as error:
        raise click.ClickException(str(error)) from error


@compliance_cli.command("simulate")
@click.argument("tenant")
@click.argument("schedule", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def simulate(tenant: str, schedule: Path) -> None:
    """Which attempts of a SCHEDULE (a JSON list of {case_id, contact_id, channel, at,
    result?}) TENANT's gate would block, and why. Nothing is written."""

    try:
        items = ProposedAttemptSchema(many=True).load(json.loads(schedule.read_text()))
    except (ValidationError, json.JSONDecodeError) as error:
        raise click.ClickException(f"invalid schedule: {error}") from error
    objects = _objects()
    try:
        with tenant_scope(tenant, db=objects.db) as session:
            answers = simulate_schedule(
                session,
                [ProposedAttempt(**item) for item in items],
                tenant=session.info["tenant"],
                cipher=objects.cipher,
            )
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    for answer in answers:
        at = answer["at"].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ")
        verdict = "allowed" if answer["allowed"] else f"BLOCKED {answer['rule']}"
        line = (
            f"{answer['index']:>3} case {answer['case_id']} {answer['channel']:<8} {at} {verdict}"
        )
        if not answer["allowed"]:
            nxt = answer["next_allowed_at"]
            line += f" (next {nxt.astimezone(dt.UTC):%Y-%m-%d %H:%MZ})" if nxt else " (no time)"
        click.echo(line)
