"""The operator's pages in a real browser: the tenants page with a refused slug, and the
jobs page with a job that failed for real, retried, in both languages."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD, World
from tests.test_ops_pages import NO_TENANT, _failing_job

pytestmark = BROWSER

TEXTS = {
    "zh-CN": {
        "tenants": "租户",
        "slug_error": "请使用小写字母、数字和单个连字符",
        "jobs": "后台任务",
        "retried": "已重新放回 default 队列",
    },
    "en": {
        "tenants": "Tenants",
        "slug_error": "Use lowercase letters, digits and single hyphens",
        "jobs": "Background jobs",
        "retried": "is back on the default queue",
    },
}


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_the_operator_sees_tenants_and_retries_a_failed_job(
    world: World, served: str, browser: WebDriver, request: pytest.FixtureRequest
) -> None:
    language = request.node.callspec.params["browser"]
    texts = TEXTS[language]
    sign_in(browser, served, world.platform_admin_email, PASSWORD)
    assert browser.current_url == f"{served}/ops/tenants"  # home sends the operator here
    assert wait_for(browser, "h1").text == texts["tenants"]
    assert world.a.slug in browser.find_element(By.CSS_SELECTOR, "table").text

    browser.find_element(By.ID, "slug").send_keys("Not A Slug")
    browser.find_element(By.ID, "name").send_keys(
        "华东小贷" if language == "zh-CN" else "East Lending"
    )
    browser.find_element(By.CSS_SELECTOR, "#new-tenant ~ form button[type=submit]").click()
    error = wait_for(browser, "#slug-error")
    assert texts["slug_error"] in error.text
    assert browser.find_element(By.ID, "slug").get_attribute("value") == "Not A Slug"  # kept
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, f"ops-tenants-{language}")

    _queue, job_id = _failing_job(world.app)
    browser.find_element(By.LINK_TEXT, texts["jobs"]).click()
    assert wait_for(browser, "h1").text == texts["jobs"]
    row = browser.find_element(By.XPATH, f"//tr[td/div[text()='{job_id}']]")
    assert row.find_element(By.CSS_SELECTOR, ".job-error").text == (
        f"LookupError: no tenant {NO_TENANT}"
    )
    row.find_element(By.CSS_SELECTOR, "details summary").click()
    assert "Traceback (most recent call last)" in row.find_element(By.CSS_SELECTOR, "pre").text
    browser.execute_script("document.getElementById('failed').scrollIntoView()")
    screenshot(browser, f"ops-jobs-{language}")

    row.find_element(By.CSS_SELECTOR, "button.btn:not(.danger)").click()
    assert texts["retried"] in wait_for(browser, "p.flash").text
