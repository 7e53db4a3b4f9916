"""The portal in two languages: every string translated, the language rule, locale formats,
and the page frame's access rules (sign-in, roles, the tenant in the path)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from flask import Flask, g
from sqlalchemy import select

from recova.platform.auth.models import User
from recova.platform.kernel.extension import platform
from recova.platform.web import catalog
from recova.platform.web.i18n import date, money, number, percent
from recova.platform.web.pages import safe_next
from tests.support import B_MARK, PASSWORD, Caller, anonymous, login


def test_every_string_of_the_code_and_templates_has_a_chinese_translation() -> None:
    missing = catalog.untranslated(catalog.extract(), catalog.read_catalog())

    assert missing == [], "run `recova i18n update`, translate, `recova i18n add`: " + ", ".join(
        missing
    )


def test_the_compiled_catalogue_is_the_catalogue() -> None:
    assert catalog.MO.read_bytes() == catalog.compiled(catalog.read_catalog()), (
        "messages.mo is older than messages.po: run `recova i18n update`"
    )


def test_the_untranslated_check_catches_a_new_string() -> None:
    template = catalog.extract()
    template.add("A sentence nobody has translated yet")

    assert catalog.untranslated(template, catalog.read_catalog()) == [
        "A sentence nobody has translated yet"
    ]


def _csrf(caller: Caller, path: str) -> str:
    page = caller.client.get(path, follow_redirects=True).get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def test_the_browser_language_decides_before_any_choice(app: Flask) -> None:
    client = app.test_client()

    chinese = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    english = client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    neither = client.get("/login", headers={"Accept-Language": "fr-FR"})

    assert "登录 Recova" in chinese.get_data(as_text=True)
    assert 'lang="zh-CN"' in chinese.get_data(as_text=True)
    assert "Sign in to Recova" in english.get_data(as_text=True)
    assert "Sign in to Recova" in neither.get_data(as_text=True)


def test_a_choice_before_sign_in_is_kept_and_saved_on_the_user(world) -> None:  # type: ignore[no-untyped-def]
    visitor = anonymous(world.app)
    token = _csrf(visitor, "/login")
    switched = visitor.client.post(
        "/language", data={"csrf_token": token, "locale": "zh_CN", "next": "/login"}
    )
    assert switched.status_code == 302
    assert switched.headers["Location"] == "/login"
    assert "登录 Recova" in visitor.client.get("/login").get_data(as_text=True)

    admin = login(world.app, world.a.admin_email)
    token = _csrf(admin, "/")
    admin.client.post("/language", data={"csrf_token": token, "locale": "zh_CN", "next": "/"})
    with platform(world.app).db.session() as session:
        saved = session.scalar(select(User.locale).where(User.email == world.a.admin_email))
    assert saved == "zh_CN"

    # A new session, an English browser: the saved choice wins.
    again = login(world.app, world.a.admin_email)
    page = again.client.get(f"/portal/{world.a.slug}/", headers={"Accept-Language": "en"}).get_data(
        as_text=True
    )
    assert "概览" in page
    assert "退出登录" in page


def test_the_language_switch_refuses_an_unknown_language_and_another_site(world) -> None:  # type: ignore[no-untyped-def]
    visitor = anonymous(world.app)
    token = _csrf(visitor, "/login")

    unknown = visitor.client.post("/language", data={"csrf_token": token, "locale": "fr"})
    elsewhere = visitor.client.post(
        "/language",
        data={"csrf_token": token, "locale": "en", "next": "https://evil.example/"},
    )
    no_token = visitor.client.post("/language", data={"locale": "en"})

    assert unknown.status_code == 400
    assert elsewhere.headers["Location"] == "/"
    assert no_token.status_code == 400


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/portal/x/cases?bucket=M1", "/portal/x/cases?bucket=M1"),
        ("https://evil.example/", None),
        ("//evil.example/", None),
        ("javascript:alert(1)", None),
        ("portal", None),
        (None, None),
    ],
)
def test_only_paths_of_this_site_are_followed_after_sign_in(
    target: str | None, kept: str | None
) -> None:
    assert safe_next(target) == kept


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh_CN", ["¥1,234.50", "¥0.005", "1,234,567", "12.3%", "2026年11月1日"]),
        ("en", ["CN¥1,234.50", "CN¥0.005", "1,234,567", "12.3%", "November 1, 2026"]),
    ],
)
def test_money_numbers_and_dates_follow_the_locale_and_keep_every_digit(
    app: Flask, locale: str, expected: list[str]
) -> None:
    with app.test_request_context("/"):
        g.forced_locale = locale
        got = [
            money(Decimal("1234.5"), "CNY"),
            money(Decimal("0.005"), "CNY"),
            number(1234567),
            percent(Decimal("0.1234")),
            date(dt.date(2026, 11, 1), "long"),
        ]
    assert got == expected


def test_a_page_sends_a_visitor_to_sign_in_and_back(world) -> None:  # type: ignore[no-untyped-def]
    visitor = anonymous(world.app)
    path = f"/portal/{world.a.slug}/"

    sent = visitor.client.get(path)

    assert sent.status_code == 302
    assert sent.headers["Location"].startswith("/login?next=")
    token = _csrf(visitor, sent.headers["Location"])
    signed_in = visitor.client.post(
        sent.headers["Location"],
        data={"csrf_token": token, "email": world.a.admin_email, "password": PASSWORD},
    )
    assert signed_in.headers.get("Location") in (path, "/")


def test_portal_pages_are_for_their_tenant_only(world) -> None:  # type: ignore[no-untyped-def]
    admin = login(world.app, world.a.admin_email)
    manager = login(world.app, world.manager_email)

    own = admin.client.get(f"/portal/{world.a.slug}/")
    other = admin.client.get(f"/portal/{world.b.slug}/")
    agency = manager.client.get(f"/portal/{world.a.slug}/")

    assert own.status_code == 200
    assert other.status_code == 404
    assert agency.status_code == 403
    # The same page as for a slug that does not exist: nothing of tenant B's, no sections.
    assert 'class="sidebar"' not in other.get_data(as_text=True)
    assert other.get_data(as_text=True).count(B_MARK) == admin.client.get(
        f"/portal/{world.b.slug.replace(B_MARK, 'nomark')}/"
    ).get_data(as_text=True).count("nomark")
