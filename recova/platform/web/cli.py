"""``recova i18n``: keep the portal's Chinese catalogue in step with the code."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from recova.platform.web.catalog import PO, add_file, extract, read_catalog, untranslated, update


@click.group("i18n")
def i18n_cli() -> None:
    """The portal's message catalogues (recova/platform/web/translations)."""


@i18n_cli.command("update")
def i18n_update() -> None:
    """Extract every marked string, merge it into the catalogue and compile it."""
    missing = update()
    click.echo(f"{PO}: {len(missing)} strings untranslated")
    for msgid in missing:
        click.echo(f"  {msgid}")


@i18n_cli.command("add")
@click.argument("translations", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def i18n_add(translations: Path) -> None:
    """Merge a JSON object of {"English": "中文"} into the catalogue and compile it."""
    click.echo(f"{add_file(translations)} translations set")


@i18n_cli.command("check")
def i18n_check() -> None:
    """List the strings with no Chinese translation; exit 1 if there is any."""
    missing = untranslated(extract(), read_catalog())
    for msgid in missing:
        click.echo(msgid)
    if missing:
        sys.exit(1)
    click.echo("every string is translated")
