"""In a real browser: a tenant admin issues an invoice and downloads its PDF, in both
languages."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.billing_support import Ledger, day
from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD

pytestmark = BROWSER

FEB = dt.date(2026, 2, 1)


def wait_for_download(folder: Path, suffix: str, timeout: float = 30) -> Path:
    """The finished download in ``folder`` (Chromium writes ``.crdownload`` until done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [path for path in folder.glob(f"*{suffix}") if path.stat().st_size > 0]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} file in {folder}: {list(folder.iterdir())}")


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_an_admin_issues_an_invoice_and_downloads_its_pdf(
    app: Flask, served: str, browser: WebDriver, tmp_path: Path
) -> None:
    ledger = Ledger(app, cases=4)
    ledger.set_payout(ledger.agency(0), share="40")
    ledger.version(rates={"*": "10"}, vat_rate="6")
    for n, case in enumerate(ledger.case_ids):
        ledger.place(case, ledger.agency(n % 2), FEB, days=90)
        ledger.pay(case, "200.00", day(5, FEB))
    ledger.close(FEB)
    (invoice,) = ledger.invoices()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )

    sign_in(browser, served, ledger.tenant.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{ledger.tenant.slug}/billing/")
    wait_for(browser, "table.invoices")
    lang = browser.find_element(By.TAG_NAME, "html").get_attribute("lang") or ""
    suffix = "zh-CN" if lang.startswith("zh") else "en"
    screenshot(browser, f"billing-{suffix}")

    browser.find_element(By.CSS_SELECTOR, f'tr[data-invoice="{invoice["id"]}"] a').click()
    wait_for(browser, "form.issue button").click()
    WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.accept()
    wait_for(browser, '.page-head [data-status="issued"]')
    assert ledger.invoices()[0]["status"] == "issued"
    # An issued invoice offers no issue any more, only payment and void.
    assert not browser.find_elements(By.CSS_SELECTOR, "form.issue")
    wait_for(browser, "form.mark-paid")
    screenshot(browser, f"billing-invoice-{suffix}")

    browser.find_element(By.CSS_SELECTOR, "a.download-pdf").click()
    pdf = wait_for_download(downloads, ".pdf")
    assert pdf.name == f"{ledger.tenant.slug}-2026-02-CNY-invoice-{invoice['number']}.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")

    browser.get(f"{served}/portal/{ledger.tenant.slug}/billing/close?month=2026-02")
    wait_for(browser, "section.preview")
    screenshot(browser, f"billing-close-{suffix}")
