"""The portal's message catalogues: extract, update, add translations, compile, check.

English is the source language: the code and the templates are written in it, so only
Simplified Chinese has a catalogue
(``translations/zh_Hans_CN/LC_MESSAGES/messages.po``).
``recova i18n update`` extracts every marked string of ``recova/`` (Python ``gettext``,
``_``, ``_l``, ``lazy_gettext``, ``ngettext``; Jinja ``_()`` and ``{% trans %}``) into
``messages.pot``, merges it into the catalogue (new strings untranslated, vanished ones
dropped) and compiles ``messages.mo``; ``recova i18n add FILE.json`` merges translations
(``{"msgid": "译文"}``) and compiles; ``recova i18n check`` lists what is untranslated.
Each holds a lock on the folder, so two people (or two tools) updating at once take turns.

Babel's own ``pybabel`` does the same steps one by one; this puts them in one command
with the project's settings, and gives the test suite the same extraction.
"""

from __future__ import annotations

import fcntl
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from recova.platform.web.i18n import TRANSLATIONS

PACKAGE = Path(__file__).resolve().parents[2]  # recova/
LOCALE = "zh_CN"
KEYWORDS = {
    "_": None,
    "gettext": None,
    "_l": None,
    "lazy_gettext": None,
    "ngettext": (1, 2),
    "lazy_ngettext": (1, 2),
}
METHODS = [
    ("**/templates/**.html", "jinja2"),
    ("**/templates/**.txt", "jinja2"),
    ("**.py", "python"),
]
JINJA_OPTIONS = {"extensions": "jinja2.ext.do", "trimmed": "true"}
POT = TRANSLATIONS / "messages.pot"
#: The folder is named as Babel names the locale (``zh_CN`` is ``zh_Hans_CN`` to it), the
#: name Flask-Babel looks the catalogue up by.
PO = TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")


def extract() -> Catalog:
    """Every marked string of the package, with where it was found."""
    catalog = Catalog(project="Recova", charset="utf-8")
    options = {"**/templates/**.html": JINJA_OPTIONS, "**/templates/**.txt": JINJA_OPTIONS}
    for filename, lineno, message, comments, context in extract_from_dir(
        str(PACKAGE), METHODS, options_map=options, keywords=KEYWORDS, strip_comment_tags=True
    ):
        catalog.add(
            message,
            None,
            [(f"recova/{filename}", lineno)],
            auto_comments=comments,
            context=context,
        )
    return catalog


def read_catalog(path: Path = PO) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=LOCALE)


def untranslated(template: Catalog, catalog: Catalog) -> list[str]:
    """The ids of ``template`` with no translation (or a fuzzy one) in ``catalog``."""
    missing = []
    for message in template:
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        strings = found.string if found is not None else None
        values = strings if isinstance(strings, tuple) else (strings,)
        if found is None or found.fuzzy or not all(values):
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


def compiled(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


@contextmanager
def _locked() -> Iterator[None]:
    TRANSLATIONS.mkdir(parents=True, exist_ok=True)
    with (TRANSLATIONS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write(catalog: Catalog) -> None:
    PO.parent.mkdir(parents=True, exist_ok=True)
    catalog.fuzzy = False  # the header: the catalogue is in use, not a draft
    catalog.copyright_holder = catalog.last_translator = "Recova developers"
    catalog.msgid_bugs_address = ""
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, sort_output=False, omit_header=False)
    PO.write_bytes(buffer.getvalue())
    MO.write_bytes(compiled(catalog))


def update() -> list[str]:
    """Extract, merge into the catalogue, compile; the ids still untranslated."""
    with _locked():
        template = extract()
        buffer = io.BytesIO()
        write_po(buffer, template, width=100, omit_header=False)
        POT.write_bytes(buffer.getvalue())
        catalog = read_catalog() if PO.exists() else Catalog(locale=LOCALE, project="Recova")
        # No fuzzy guesses: a near match is a wrong translation shown to a debtor's lender.
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
        catalog.obsolete.clear()
        _write(catalog)
        return untranslated(template, catalog)


def add(translations: dict[str, str]) -> int:
    """Merge ``{msgid: translation}`` into the catalogue and compile; how many were set."""
    with _locked():
        catalog = read_catalog()
        count = 0
        for msgid, string in translations.items():
            message = catalog.get(msgid)
            if message is None or not string:
                continue
            # Chinese has one plural form: the same text for every count.
            message.string = (string,) * catalog.num_plurals if message.pluralizable else string
            message.flags.discard("fuzzy")
            count += 1
        _write(catalog)
        return count


def add_file(path: Path) -> int:
    return add(json.loads(path.read_text(encoding="utf-8")))
