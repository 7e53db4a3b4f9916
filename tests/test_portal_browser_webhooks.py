"""The Webhooks page in a real browser, in both languages: an admin registers an endpoint
with the checkboxes, copies the secret shown once, and sees the endpoint in the list."""

from __future__ import annotations

import re

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD, World
from tests.webhook_support import PUBLIC_URL

pytestmark = BROWSER


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_an_admin_registers_an_endpoint_and_sees_its_secret_once(
    world: World, served: str, browser: WebDriver
) -> None:
    sign_in(browser, served, world.a.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{world.a.slug}/webhooks")
    wait_for(browser, "#url").send_keys(PUBLIC_URL)
    browser.find_element(By.ID, "description").send_keys("Core banking")
    for name in ("promise.kept", "settlement.decided", "invoice.issued"):
        browser.find_element(By.CSS_SELECTOR, f'input[value="{name}"]').click()
    lang = browser.find_element(By.TAG_NAME, "html").get_attribute("lang")
    screenshot(browser, f"webhooks-register-{lang}")
    browser.find_element(By.CSS_SELECTOR, "#register button[type=submit]").click()

    secret = wait_for(browser, "#secret").get_attribute("value") or ""
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]{40,}", secret)
    screenshot(browser, f"webhooks-secret-{lang}")
    browser.find_element(By.CSS_SELECTOR, "main a.btn").click()
    wait_for(browser, "h1 code")
    assert secret not in browser.page_source
    browser.get(f"{served}/portal/{world.a.slug}/webhooks")
    wait_for(browser, "table")
    assert PUBLIC_URL in browser.page_source
    assert secret not in browser.page_source
    screenshot(browser, f"webhooks-{lang}")
