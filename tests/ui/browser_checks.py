"""What the visual and accessibility journeys share: the pages to visit, a watcher of console errors and failed
requests, axe-core (vendored) run inside a page, and screenshots (under docs/screenshots/ when
``SIMPLETUNER_UPDATE_SCREENSHOTS=1``, else in the test's folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Request

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
#: Impacts that fail a page.
BLOCKING = ("serious", "critical")
#: Page → an element that shows once the page's script has filled it in (the administrator's pages).
PAGES = {
    "/": "main h2",
    "/training": "#st-status",
    "/wizard": "#families label",
    "/datasets": "#ds-id",
    "/config": "#opt-lora_rank",
    "/environments": "#env-table tbody tr",
    "/onboarding": "#example-choices label",
    "/plugins": "main table",
    "/profile": "#api-keys",
    "/admin/users": "main table",
    "/admin/levels": "main table",
    "/admin/providers": "main form",
    "/admin/registration": "main form",
    "/admin/paths": "main form",
    "/admin/outbound": "main form",
    "/admin/retention": "main form",
    "/admin/audit": "main table",
}


def shot_name(path: str) -> str:
    """``/admin/users`` → ``admin-users``; ``/`` → ``home``."""
    return path.strip("/").replace("/", "-") or "home"


class Watcher:
    """Collects console errors, uncaught exceptions and failed requests (network failures and HTTP errors) of a
    page; ``take()`` returns them and starts afresh."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", lambda msg: self.problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda res: self.problems.append(f"HTTP {res.status}: {res.request.method} {res.url}")
                if res.status >= 400 else None)

    def _failed(self, request: Request) -> None:
        # leaving a page ends its event stream: the browser reports that as aborted, which is no failure
        if not (request.failure == "net::ERR_ABORTED" and request.url.split("?")[0].endswith("/api/events")):
            self.problems.append(f"failed: {request.method} {request.url} {request.failure}")

    def take(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems


def axe_violations(page: Page, rules: list[str] | None = None) -> list[dict[str, Any]]:
    """Runs axe-core in the page (through the DevTools protocol, so the page's CSP stays as it is) and returns the
    serious and critical violations, each with its rule, impact, help and the first offending elements."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if rules:
        options["runOnly"] = {"type": "rule", "values": rules}
    violations = page.evaluate("""async (options) => {
      const result = await window.axe.run(document, options);
      return result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + ": " + n.failureSummary.replace(/\\s+/g, " "))}));
    }""", options)
    return [v for v in violations if v["impact"] in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['impact']} {v['id']} ({v['help']}): " + " | ".join(v["nodes"]) for v in violations)


def screenshot_folder(fallback: Path) -> Path:
    """docs/screenshots/ when asked to update them, else ``fallback``."""
    folder = DOCS_SCREENSHOTS if os.environ.get("SIMPLETUNER_UPDATE_SCREENSHOTS") == "1" else fallback
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Page, folder: Path, name: str, full_page: bool = True) -> Path:
    """A PNG of the page, reduced to a 256-colour palette (UI screenshots stay sharp and a fraction of the size)."""
    from PIL import Image

    path = folder / f"{name}.png"
    page.screenshot(path=path, full_page=full_page, animations="disabled", caret="hide")
    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    reduced.save(path, optimize=True)
    return path
