"""``recova privacy ...``: retention erasure and settings from the command line."""

from __future__ import annotations

import click

from recova.platform.kernel.cli import cli_platform
from recova.platform.privacy.retention import erase_expired
from recova.tenants.scope import tenant_scope


@click.group("privacy")
def privacy_cli() -> None:
    """Personal data: retention and erasure."""


@privacy_cli.command("erase")
@click.argument("tenant")
def erase(tenant: str) -> None:
    """Erase TENANT's debtors past retention now (the daily job, here)."""

    try:
        with tenant_scope(tenant, db=cli_platform().db) as session:
            counts = erase_expired(session, actor="cli:privacy-erase")
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"erased {counts['debtors']} debtors, purged {counts['file_chunks']} file chunks")
