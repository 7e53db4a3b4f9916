"""The portal's languages and how it formats numbers, money and dates (Flask-Babel).

Two languages: Simplified Chinese (``zh_CN``) and English (``en``). The language of a
request is the signed-in user's saved choice, else the one chosen on the sign-in page
(kept in the session), else the browser's ``Accept-Language``, else English.

Catalogues live in ``recova/platform/web/translations`` (``messages.pot`` extracted by
``pybabel extract -F babel.cfg``, one ``messages.po`` per language, compiled to the
``messages.mo`` Flask-Babel reads). ``tests/test_web_i18n.py`` fails on a string of the
code or the templates that has no Chinese translation, and on a ``.mo`` older than its
``.po``. The README says how to update them.

Formatting goes through ``babel``: money keeps every digit it has (never rounded for
display, and at least its currency's minor unit: ``¥1,234.50``), dates are the locale's
long or medium form (``2026年11月1日``, ``Nov 1, 2026``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from flask import Flask, g, request, session
from flask_babel import Babel, get_locale

from recova.platform.auth.principal import current_principal

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "en"
#: Where an anonymous visitor's choice is kept.
SESSION_LOCALE_KEY = "locale"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: The language switcher's names, each in its own language.
LANGUAGE_NAMES = {"zh_CN": "中文", "en": "English"}
#: The ``lang`` attribute of each language's pages (fonts and screen readers follow it).
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}


def select_locale() -> str:
    """The language of this request (see the module docstring for the order)."""
    forced = g.get("forced_locale")
    if forced in LOCALES:
        return str(forced)
    principal = current_principal() if request else None
    if principal is not None and principal.locale in LOCALES:
        return str(principal.locale)
    chosen = session.get(SESSION_LOCALE_KEY)
    if chosen in LOCALES:
        return str(chosen)
    return locale_from_accept_language()


def locale_from_accept_language() -> str:
    """The first of the browser's languages that the portal speaks, by quality."""
    for language, _quality in request.accept_languages:
        tag = language.lower().replace("_", "-")
        if tag == "zh" or tag.startswith("zh-"):
            return "zh_CN"
        if tag == "en" or tag.startswith("en-"):
            return "en"
    return DEFAULT_LOCALE


def current_locale() -> str:
    """The request's locale, one of ``LOCALES`` (Babel itself says ``zh_Hans_CN``)."""
    locale = get_locale()
    return "zh_CN" if locale is not None and locale.language == "zh" else DEFAULT_LOCALE


def money(amount: Decimal | int | str | None, currency: str = "CNY") -> str:
    """``amount`` in ``currency``, every digit kept: ``¥1,234.50`` / ``CN¥1,234.50``."""
    if amount is None:
        return "—"
    return format_currency(
        Decimal(amount), currency, locale=current_locale(), decimal_quantization=False
    )


def number(value: int | Decimal | None) -> str:
    """A count or amount with the locale's grouping: ``1,234``."""
    if value is None:
        return "—"
    return format_decimal(value, locale=current_locale(), decimal_quantization=False)


def percent(value: Decimal | float | None, digits: int = 1) -> str:
    """A ratio as a percentage with ``digits`` decimals: ``12.3%``."""
    if value is None:
        return "—"
    pattern = "#,##0." + "0" * digits + "%" if digits else "#,##0%"
    return format_percent(value, pattern, locale=current_locale())


def date(value: dt.date | None, form: str = "medium") -> str:
    """A date in the locale's ``medium`` (``2026年11月1日`` / ``Nov 1, 2026``) or other form."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        value = value.date()
    return format_date(value, form, locale=current_locale())


def datetime(value: dt.datetime | None, form: str = "medium", tz: str | None = None) -> str:
    """A moment in the locale's form, in ``tz`` (the tenant's zone) when given."""
    if value is None:
        return "—"
    zone = ZoneInfo(tz) if tz else None
    return format_datetime(value, form, tzinfo=zone, locale=current_locale())


def init_i18n(app: Flask) -> None:
    """Install Flask-Babel with the locale rule and the formatting filters."""
    Babel(
        app,
        locale_selector=select_locale,
        default_locale=DEFAULT_LOCALE,
        default_translation_directories=str(TRANSLATIONS),
    )
    app.config["WTF_I18N_ENABLED"] = True  # WTForms' own messages through Flask-Babel
    app.jinja_env.filters.update(
        money=money, number=number, percent=percent, date=date, datetime=datetime
    )

    @app.context_processor
    def _languages() -> dict[str, object]:
        locale = current_locale()
        return {
            "current_locale": locale,
            "html_lang": HTML_LANG[locale],
            "language_names": LANGUAGE_NAMES,
        }
