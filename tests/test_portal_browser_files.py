"""Portfolio files in a real browser, in both languages: a tenant admin uploads a GBK file
with Chinese headers, builds a new mapping from its header, sees the preview with the bad
rows, starts the run, watches it finish on a real RQ worker and reads its row errors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from flask import Flask
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import BROWSER, browser, screenshot, served, sign_in, wait_for  # noqa: F401
from tests.ingest_support import cn_row
from tests.support import PASSWORD, World
from tests.test_ingest_api import run_jobs
from tests.test_portal_files import _csv

pytestmark = BROWSER


@pytest.mark.parametrize("browser", ["zh-CN", "en"], indirect=True)
def test_a_gbk_file_with_a_new_mapping_through_to_its_row_errors(
    app: Flask,
    world: World,
    served: str,  # noqa: F811
    browser: WebDriver,  # noqa: F811
    tmp_path: Path,
) -> None:
    language = "zh" if "zh" in browser.execute_script("return navigator.language") else "en"
    rows = [cn_row(n) for n in range(1, 16)]
    rows += [cn_row(16, 借款人姓名=""), cn_row(17, 应还本金="八千"), cn_row(18, 手机号="12")]
    rows += [cn_row(n) for n in range(19, 31)]
    upload = tmp_path / "逾期案件-2026-05.csv"
    upload.write_bytes(_csv(rows, encoding="gbk"))

    sign_in(browser, served, world.a.admin_email, PASSWORD)
    browser.get(f"{served}/portal/{world.a.slug}/files")
    wait_for(browser, "#file").send_keys(str(upload))
    Select(browser.find_element(By.ID, "kind")).select_by_value("portfolio")
    browser.find_element(By.CSS_SELECTOR, ".upload-form button[type=submit]").click()

    # The file's page: its Chinese columns, the suggested fields, and the preview.
    wait_for(browser, "#preview")
    columns = browser.find_element(By.CSS_SELECTOR, "table.columns").text
    assert "借款人姓名" in columns
    assert "张1" in columns
    chosen = Select(browser.find_element(By.NAME, "column_1")).first_selected_option
    assert chosen.get_attribute("value") == "full_name"
    preview = browser.find_element(By.CSS_SELECTOR, "table.preview")
    rejected = preview.find_elements(By.CSS_SELECTOR, "tr.error")
    assert [r.find_element(By.CSS_SELECTOR, "td.num").text for r in rejected] == ["17", "18"]
    assert "借款人姓名" in rejected[0].text
    assert len(preview.find_elements(By.CSS_SELECTOR, "tr.warning")) == 1
    browser.find_element(By.ID, "name").send_keys(f"cn-gbk-{language}")
    # The picture: the end of the mapping, the run's options and the preview below them.
    browser.set_window_size(1280, 1700)
    browser.execute_script(
        "const run = document.querySelectorAll('.mapping-form section')[1];"
        " window.scrollTo(0, run.getBoundingClientRect().top + window.scrollY - 16)"
    )
    screenshot(browser, f"files-{language}")
    browser.set_window_size(1280, 1024)

    browser.find_element(By.CSS_SELECTOR, "button[name=action][value=start]").click()
    progress = wait_for(browser, "#run-progress")
    assert progress.get_attribute("data-status") in ("queued", "running")
    run_url = browser.current_url
    assert re.search(r"/files/runs/\d+$", run_url)

    run_jobs(app)  # the worker, in this thread; the page polls the server's thread meanwhile
    deadline = time.monotonic() + 30
    WebDriverWait(browser, 30).until(
        lambda driver: (
            driver.find_element(By.ID, "run-progress").get_attribute("data-status") == "completed"
            or time.monotonic() > deadline
        )
    )
    progress = browser.find_element(By.ID, "run-progress")
    assert progress.get_attribute("data-status") == "completed"
    assert progress.find_element(By.CSS_SELECTOR, '[data-count="inserted"]').text == "28"
    assert progress.find_element(By.CSS_SELECTOR, '[data-count="rejected"]').text == "2"
    errors = wait_for(browser, "table.row-errors")
    lines = errors.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [line.find_element(By.CSS_SELECTOR, "td.num").text for line in lines] == [
        "17",
        "18",
        "19",
    ]
    assert "借款人姓名" in lines[0].text
    screenshot(browser, f"files-run-{language}")

    browser.find_element(
        By.LINK_TEXT, "全部文件与批次" if language == "zh" else "All files and runs"
    ).click()
    runs = wait_for(browser, "#runs + .table-wrap table")
    assert "逾期案件-2026-05.csv" in runs.text
    screenshot(browser, f"files-list-{language}")
