"""The settings pages in a real browser: the users page in both languages, a client's
secret shown once."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser import BROWSER, screenshot, sign_in, wait_for
from tests.support import PASSWORD, World

pytestmark = BROWSER

USERS_HEADING = {"zh-CN": "邀请用户", "en": "Invite a user"}


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_an_admin_invites_a_user_and_sees_them_listed(
    world: World, served: str, browser: WebDriver, request: pytest.FixtureRequest
) -> None:
    language = request.node.callspec.params["browser"]
    sign_in(browser, served, world.a.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{world.a.slug}/settings/users")
    assert wait_for(browser, "#invite").text == USERS_HEADING[language]

    email = f"wang.{language.lower()}@alpha.test"
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "full_name").send_keys(
        "王小明" if language == "zh-CN" else "Wang Xiaoming"
    )
    browser.find_element(By.ID, "password").send_keys("short")
    browser.find_element(By.CSS_SELECTOR, "#invite + p + form button[type=submit]").click()
    error = wait_for(browser, "#password-error")
    assert error.text == ("至少 10 个字符。" if language == "zh-CN" else "At least 10 characters.")
    assert browser.find_element(By.ID, "email").get_attribute("value") == email  # kept

    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#invite + p + form button[type=submit]").click()
    flash = wait_for(browser, "p.flash")
    assert email in flash.text
    assert email in browser.find_element(By.CSS_SELECTOR, "table").text
    browser.execute_script("window.scrollTo(0, 0)")  # the form's #invite anchor scrolled down
    screenshot(browser, f"settings-{language}")
