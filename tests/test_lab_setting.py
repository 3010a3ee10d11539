"""LAB_ENABLED: the streaming lab's deliberately broken modes can be turned off (the Procfile does)."""

from __future__ import annotations

import httpx

from tests.support.servers import HEALTH_PATH, STREAM_PATH, LiveApp


def test_with_the_lab_off_a_lab_mode_is_404_and_health_says_so():
    with LiveApp({"LAB_ENABLED": "false"}) as live:
        refused = httpx.post(live.url + STREAM_PATH + "?lab=blocking", json={"message": "hi"}, timeout=10)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "lab_disabled"
        assert httpx.get(live.url + HEALTH_PATH, timeout=10).json()["lab"] is False
        real = httpx.post(live.url + STREAM_PATH, json={"message": "hi"}, timeout=10)
        assert real.status_code == 200 and "event: done" in real.text


def test_with_the_lab_on_the_same_request_is_served_through_the_mode():
    with LiveApp({"LAB_ENABLED": "true"}) as live:
        response = httpx.post(live.url + STREAM_PATH + "?lab=blocking", json={"message": "hi"}, timeout=10)
        assert response.status_code == 200 and response.headers["x-lab-mode"] == "blocking"
        assert httpx.get(live.url + HEALTH_PATH, timeout=10).json()["lab"] is True
