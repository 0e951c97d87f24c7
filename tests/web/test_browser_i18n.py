"""The panel switched to Uzbek and to Russian in real headless Chromium: the choice
made on the admin's page with the selector, the menu (longer words than English)
still in sight on a phone, and screenshots of the dashboard and an extension's page
in each language ($PBX_SCREENSHOTS if set, e.g. docs/screenshots; else a temporary
directory). Chromium or chromedriver missing is a failure, never a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import test_browser
import test_browser_menu
from panel_testing import ADMIN, REALM, PanelProcess, free_tcp_port
from test_browser import PHONE, assert_no_console_errors, click_and_load, log_in, save_screenshot

from core.accounts import create_admin, create_extension
from core.config import load_settings
from core.database import connect
from core.models import db

chromium = test_browser.chromium
browser = test_browser.browser

MENU = {
    "uz": ["Umumiy holat", "Ichki raqamlar", "Roʻyxatdan oʻtish", "Joriy qoʻngʻiroqlar",
           "Qoʻngʻiroqlar tarixi", "Muvaffaqiyatsiz kirishlar", "Bloklashlar",
           "Amallar jurnali", "Sozlamalar"],
    "ru": ["Сводка", "Внутренние номера", "Регистрации", "Текущие вызовы", "История вызовов",
           "Неудачные входы", "Блокировки", "Журнал действий", "Настройки"],
}


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "pbx.db"
    connect(load_settings({"PBX_DB": str(path), "PBX_REALM": REALM}))
    create_admin(*ADMIN)
    create_extension("1002", REALM, name="Reception", password="correct-horse-1")
    db.close()
    return path


def choose_language(driver, panel, language: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get(panel.url + "/account")
    Select(driver.find_element(By.NAME, "language")).select_by_value(language)
    click_and_load(driver, driver.find_element(By.NAME, "save"))
    assert driver.current_url == panel.url + "/account"
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == language


@pytest.mark.parametrize("language", ["uz", "ru"])
def test_the_panel_in_each_language_fits_a_phone(browser, database, tmp_path, language):
    screenshots = Path(os.environ.get("PBX_SCREENSHOTS") or tmp_path / "screenshots")
    screenshots.mkdir(parents=True, exist_ok=True)
    panel = PanelProcess(database, tmp_path, free_tcp_port()).start()
    try:
        log_in(browser, panel)
        choose_language(browser, panel, language)
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        for path in test_browser_menu.PAGES + ["/extensions/1002"]:
            entries = test_browser_menu.menu_in_sight(browser, panel.url, path)
            assert all(section in entries for section in MENU[language]), (path, entries)
        # And at desktop width, where the longer words once pushed Settings off the edge.
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        for path in ["/", "/settings/"]:
            entries = test_browser_menu.menu_in_sight(browser, panel.url, path)
            assert all(section in entries for section in MENU[language]), (path, entries)
        for name, path in [("dashboard", "/"), ("extension", "/extensions/1002")]:
            browser.get(panel.url + path)
            save_screenshot(browser, screenshots / f"{name}-{language}.png")
            save_screenshot(browser, screenshots / f"{name}-{language}-phone.png", PHONE)
        assert_no_console_errors(browser)
    finally:
        assert panel.stop() == 0, panel.log()
