"""The shell in a real browser: navbar, every page reachable, Home shows the machine."""

from __future__ import annotations

from tests.e2e.conftest import screenshot


def test_home_shows_models_and_navigation(page, server_url):
    page.goto(server_url + "/")
    page.wait_for_selector("#home-status table.gb-models")
    text = page.inner_text("#home-status")
    assert "embedded:smollm2-135m-instruct" in text or "SmolLM2" in text
    assert "Device" in text and "cpu" in text
    for name in ("Tokens", "Lens", "Regions", "Features", "Neurons"):
        assert page.locator(f"nav >> text={name}").count() >= 1
    screenshot(page, "home")
    page.click("nav >> text=Lens")
    page.wait_for_url("**/lens**")
    assert page.js_errors == []


def test_healthz_json(client):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["device"] == "cpu"
    assert "embedded:smollm2-135m-instruct" in body["configured_models"]
