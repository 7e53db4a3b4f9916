"""The overview in a real browser, in both languages: a tenant admin signs in and sees the
book's figures and its three charts (and the README's screenshots are taken)."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from recova.platform.kernel.extension import platform
from recova.platform.reports import snapshot
from recova.platform.reports.snapshot import refresh_overview
from recova.platform.web.portal import overview as overview_page
from tests.billing_support import Ledger
from tests.browser import BROWSER, browser, screenshot, served, sign_in, wait_for  # noqa: F401
from tests.support import PASSWORD

pytestmark = BROWSER

TODAY = dt.date(2026, 5, 20)
CASES = 360


def busy_book(app: Flask) -> Ledger:
    """Six months of placements with two agencies, their payments, bucket history and
    promises: enough for every chart of the overview to draw something worth reading."""
    ledger = Ledger(app, cases=CASES)
    a0, a1 = ledger.agency(0), ledger.agency(1)
    ledger.sql(
        """WITH c AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM {s}.cases)
           INSERT INTO {s}.placements (case_id, agency_id, started_on, ends_on, grace_days,
                                       balance_at_placement, currency)
           SELECT id, CASE WHEN i % 3 = 0 THEN :a1 ELSE :a0 END,
                  CAST(:first AS date) + make_interval(months => (i % 6)::int)::interval,
                  CAST(:first AS date) + make_interval(months => (i % 6)::int)
                  + interval '180 days',
                  10, 1000 + (i * 37) % 2000, 'CNY'
           FROM c WHERE i % 10 <> 0""",
        a0=a0,
        a1=a1,
        first=dt.date(2025, 12, 4),
    )
    # Payments: a share of each placement's balance in some of the months since it began.
    ledger.sql(
        """INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                                     paid_to)
           SELECT 'B-' || p.id || '-' || k, c.account_id, 'payment',
                  round(p.balance_at_placement * (0.02 + ((p.id + k) % 7) * 0.01)
                        * (1 + extract(month FROM p.started_on)::int % 4 * 0.25), 2), 'CNY',
                  (p.started_on + make_interval(months => k) + ((p.id % 20) || ' days')::interval)
                  + interval '4 hours', 'tenant'
           FROM {s}.placements p JOIN {s}.cases c ON c.id = p.case_id,
                generate_series(0, 5) AS k
           WHERE (p.id * (k + 3)) % 5 < 3
             AND p.started_on + make_interval(months => k) + ((p.id % 20) || ' days')::interval
                 < CAST(:today AS date)""",
        today=TODAY,
    )
    ledger.sql(
        """INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                                     paid_to)
           SELECT 'OWN-' || c.id, c.account_id, 'payment', 180.00, 'CNY',
                  CAST(:today AS date) - (c.id % 25) + interval '4 hours', 'agency'
           FROM {s}.cases c WHERE c.id % 10 = 0""",
        today=TODAY,
    )
    buckets = ["M1", "M2", "M3", "M4", "M6+"]
    ledger.sql(
        """WITH c AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM {s}.cases),
           b AS (SELECT id, i, (CAST(:names AS text[]))[1 + i % 5] AS was,
                        (CAST(:names AS text[]))[least(5, 2 + i % 5)] AS rolled,
                        i % 3 <> 1 AND i % 5 <> 4 AS rolls
                 FROM c),
           seen AS (
               INSERT INTO {s}.bucket_transitions (case_id, as_of, from_bucket, to_bucket)
               SELECT id, DATE '2026-03-01', NULL, was FROM b
           ), moved AS (
               INSERT INTO {s}.bucket_transitions (case_id, as_of, from_bucket, to_bucket)
               SELECT id, DATE '2026-05-08', was, rolled FROM b WHERE rolls
           )
           INSERT INTO {s}.case_segments (case_id, bucket, bucket_since)
           SELECT id, CASE WHEN rolls THEN rolled ELSE was END,
                  CASE WHEN rolls THEN DATE '2026-05-08' ELSE DATE '2026-03-01' END
           FROM b""",
        names=buckets,
    )
    ledger.sql(
        "UPDATE {s}.cases SET status = 'paid', closed_at = :at WHERE id % 11 = 0",
        at=dt.datetime(2026, 5, 12, 4, tzinfo=dt.UTC),
    )
    ledger.sql(
        """INSERT INTO {s}.promises (case_id, amount, currency, due_date, status, paid_amount,
                                     created_by, evaluated_at)
           SELECT id, 300 + id % 400, 'CNY',
                  CASE WHEN id % 4 = 3 THEN DATE '2026-05-12' ELSE CAST(:today AS date) END,
                  CASE id % 4 WHEN 0 THEN 'pending' WHEN 1 THEN 'pending' WHEN 2 THEN 'kept'
                              ELSE 'broken' END::{s}.promise_status,
                  0, 'browser-test', CASE WHEN id % 4 >= 2 THEN :evaluated END
           FROM {s}.cases WHERE id % 9 = 1""",
        today=TODAY,
        evaluated=dt.datetime(2026, 5, 19, 2, tzinfo=dt.UTC),
    )
    return ledger


@pytest.mark.parametrize(
    ("browser", "shot", "labels"),
    [
        ("en", "overview-en", ("Liquidation curve", "Roll rates", "Recoveries by agency")),
        ("zh-CN", "overview-zh", ("回收率曲线", "滚动率", "各委外机构回款")),
    ],
    indirect=["browser"],
)
def test_a_tenant_admin_reads_the_overview_and_its_charts(
    app: Flask,
    served: str,  # noqa: F811
    browser: WebDriver,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    shot: str,
    labels: tuple[str, ...],
) -> None:
    monkeypatch.setattr(overview_page, "tenant_today", lambda zone: TODAY)
    monkeypatch.setattr(snapshot, "tenant_today", lambda zone: TODAY)
    ledger = busy_book(app)

    sign_in(browser, served, ledger.tenant.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{ledger.tenant.slug}/")
    # No snapshot yet: the page says so and waits; once the refresh has run (here, as the
    # worker would), its poll reloads the page with the figures.
    wait_for(browser, "#overview-computing")
    refresh_overview(platform(app), ledger.tenant.id)
    wait_for(browser, "#chart-liquidation svg")

    text = browser.find_element(By.TAG_NAME, "main").text
    for label in labels:
        assert label in text
    for chart in ("chart-liquidation", "chart-roll", "chart-agencies"):
        svg = browser.find_element(By.CSS_SELECTOR, f"#{chart} svg")
        assert svg.size["width"] > 300, chart
        assert svg.size["height"] > 150, chart
        assert svg.find_elements(By.CSS_SELECTOR, ".series"), chart
    assert browser.find_element(By.CSS_SELECTOR, "[data-figure=open-cases]").text != "0"
    # The whole page, charts included, in one picture.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 200, 5000))
    screenshot(browser, shot)
