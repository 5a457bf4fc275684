"""The tenant page (``GET /``) in a real headless Chromium against ``rentlake serve`` on 127.0.0.1.

Set ``RENTLAKE_SCREENSHOTS=DIR`` to keep a phone-sized and a desktop screenshot of the filled page.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

TIMEOUT = 15


def api(server: str, body: dict[str, Any]) -> dict[str, Any]:
    """The API's own answer, to compare the page with."""
    req = urllib.request.Request(
        server + "/estimates",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(browser: Any, script: str) -> Any:
    """Poll a JS expression until it is truthy; its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, TIMEOUT).until(lambda d: d.execute_script(f"return {script}"))


def open_page(browser: Any, server: str, query: str = "?lang=en") -> None:
    browser.get(server + "/" + query)
    wait_for(browser, "document.getElementById('model-version').textContent.length > 0")
    wait_for(browser, "document.getElementById('plot-band') !== null")


def fill(browser: Any, values: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    for element_id, text in values.items():
        el = browser.find_element(By.ID, element_id)
        el.clear()
        el.send_keys(text)


def submit(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.execute_script("document.getElementById('rent').dataset.value = ''")
    browser.find_element(By.ID, "submit").click()
    wait_for(
        browser,
        "document.getElementById('rent').dataset.value !== '' || !document.getElementById('error').hidden",
    )


def value(browser: Any, element_id: str) -> str:
    return browser.execute_script(f"return document.getElementById('{element_id}').dataset.value")


def text(browser: Any, element_id: str) -> str:
    return browser.execute_script(f"return document.getElementById('{element_id}').textContent")


def test_typing_30_shows_the_api_estimate_and_interval(browser: Any, server: str) -> None:
    # GIVEN the page, in English
    open_page(browser, server)
    # WHEN 30 is typed in the surface field and the form submitted
    fill(browser, {"surface": "30"})
    submit(browser)
    # THEN the page shows the API's estimate and 90 % interval for 30 m2
    expected = api(server, {"surface_m2": 30})
    assert int(value(browser, "rent")) == expected["rent_eur"] == 1192
    assert int(value(browser, "low")) == expected["interval"]["low"]
    assert int(value(browser, "high")) == expected["interval"]["high"]
    assert text(browser, "rent") == f"{expected['rent_eur']:,}"  # en-GB grouping: "1,192"
    assert text(browser, "level") == "90"
    # AND the user's point is drawn on the plot, with the listings and the band
    assert browser.execute_script("return document.getElementById('plot-you') !== null")
    assert browser.execute_script("return document.querySelectorAll('#plot circle').length") > 250
    # AND without the legal fields the legal side shows the API's hint
    assert text(browser, "legal-hint") == expected["legal_hint"]


def test_rent_and_legal_fields_show_both_answers_side_by_side(browser: Any, server: str) -> None:
    open_page(browser, server)
    wait_for(browser, "document.querySelectorAll('#quartier-list option').length === 80")
    fill(
        browser,
        {"surface": "30", "current-rent": "1200", "quartier": "Belleville", "rooms": "2", "built": "1965"},
    )
    submit(browser)
    expected = api(
        server,
        {
            "surface_m2": 30,
            "current_rent_eur": 1200,
            "quartier": "Belleville",
            "rooms": 2,
            "built": 1965,
            "city": "paris",
            "furnished": False,
        },
    )
    # THEN the market verdict and the legal band with its verdict, as the API answers them
    assert value(browser, "verdict") == expected["verdict"] == "within"
    assert float(value(browser, "legal-min")) == expected["legal"]["min_rent_eur"] == 486.0
    assert float(value(browser, "legal-max")) == expected["legal"]["max_rent_eur"] == 831.0
    assert value(browser, "legal-verdict") == expected["legal"]["verdict"] == "above_max"
    assert "not legal advice" in text(browser, "legal-notice")
    # AND the tenant's rent is marked on both tracks
    assert browser.execute_script("return document.querySelectorAll('.track .you').length") == 2
    shots = os.environ.get("RENTLAKE_SCREENSHOTS")
    if shots:
        save_screenshots(browser, Path(shots))


def test_language_toggle_and_accept_language(browser: Any, server: str) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, server, "")  # Accept-Language en-GB from the browser
    assert browser.execute_script("return document.documentElement.lang") == "en"
    assert text(browser, "submit") == "Estimate"
    browser.find_element(By.ID, "lang-toggle").click()
    assert browser.execute_script("return document.documentElement.lang") == "fr"
    assert text(browser, "submit") == "Estimer"
    open_page(browser, server, "?lang=fr")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Est-ce que je paie trop cher ?"


def test_refusal_is_shown_next_to_the_field(browser: Any, server: str) -> None:
    open_page(browser, server)
    fill(browser, {"surface": "30", "quartier": "Bellevile", "rooms": "2", "built": "1965"})
    submit(browser)
    assert not browser.execute_script("return document.getElementById('error').hidden")
    assert "unknown Paris quartier 'Bellevile'; closest: Belleville" in text(browser, "error")
    assert browser.execute_script("return document.getElementById('quartier').classList.contains('invalid')")


def csp_reports(browser: Any) -> list[str]:
    """The console lines in which Chromium reports something a Content-Security-Policy blocked."""
    return [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


def test_page_and_docs_work_under_their_content_security_policy(browser: Any, server: str) -> None:
    # GIVEN the page served with its policy: its one script allowed by hash, nothing inline otherwise
    with urllib.request.urlopen(server + "/?lang=en", timeout=10) as resp:
        policy = dict(p.strip().split(" ", 1) for p in resp.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"].startswith("'sha256-") and "unsafe" not in policy["script-src"]
    assert policy["frame-ancestors"] == "'none'"
    csp_reports(browser)  # earlier tests' lines
    # WHEN it is used: an estimate, the plot, the quartiers list
    open_page(browser, server)
    fill(browser, {"surface": "30"})
    submit(browser)
    assert int(value(browser, "rent")) == 1192
    # THEN the browser blocked nothing, and the markup's inline styles apply (the legend's swatches)
    assert csp_reports(browser) == []
    swatch = "getComputedStyle(document.querySelector('.legend i')).backgroundColor"
    assert browser.execute_script(f"return {swatch}") not in ("", "rgba(0, 0, 0, 0)")
    # AND a script injected into the page does not run: the policy is enforced, not only sent
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        "document.body.appendChild(s);"
    )
    assert browser.execute_script("return window.injected === undefined")
    assert any("script-src" in line for line in csp_reports(browser))
    # AND the API documentation (Swagger UI, inlined) renders under its own policy
    browser.get(server + "/docs")
    wait_for(browser, "document.querySelector('.swagger-ui .info .title') !== null")
    assert csp_reports(browser) == []


def save_screenshots(browser: Any, folder: Path) -> None:
    """A phone-sized (390×844) and a desktop (1280×900) full-page screenshot of the current page."""
    import base64

    folder.mkdir(parents=True, exist_ok=True)
    for name, width, height, mobile in (("page-phone", 390, 844, True), ("page-desktop", 1280, 900, False)):
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        full = browser.execute_script("return document.documentElement.scrollHeight")
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": full, "scale": 1},
            },
        )
        (folder / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
