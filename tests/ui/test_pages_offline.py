"""Workflow pages work offline under the strict CSP: no inline scripts or handlers, nothing from another host,
and every script and stylesheet they reference is served by the app itself."""

from __future__ import annotations

import re

from .conftest import Client, UiServer

PAGES = ("/", "/onboarding", "/environments", "/config", "/wizard", "/datasets", "/training", "/plugins")


def test_workflow_pages_load_only_packaged_assets(ui: UiServer, admin: Client) -> None:
    assert admin.post("/api/environments", {"name": "alpha", "example": "flux-lora"}).status_code == 201
    assets: set[str] = set()
    for path in PAGES:
        html = admin.get(path).text
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
        assert scripts and all(body.strip() == "" for body in scripts), path
        assert not re.search(r"\son[a-z]+=", html), path
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path
        assets |= set(re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html))
    assert {"/static/training.js", "/static/hub.js", "/static/wizard.js", "/static/home.js"} <= assets
    for asset in sorted(assets):
        answer = admin.get(asset)
        assert answer.status_code == 200 and answer.text.strip(), asset
