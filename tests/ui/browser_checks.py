"""What the visual and accessibility journeys share: the pages to visit, viewport sizes, a watcher of console errors
and failed requests, axe-core (vendored from the npm registry) run inside a page, a keyboard walk through a page, and
screenshots (under docs/screenshots/ when ``SIMPLETUNER_UPDATE_SCREENSHOTS=1``, else in the test's folder)."""

from __future__ import annotations

import json
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


DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def open_page(page: Page, url: str, ready: str) -> None:
    """Go to ``url`` and wait until its script has filled in ``ready`` and its requests are done."""
    page.goto(url)
    page.locator(ready).first.wait_for()
    page.wait_for_load_state("networkidle")


def api(page: Page, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """An API call from the page's session, as its own scripts make them."""
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    response = page.request.fetch(page.evaluate("location.origin") + path, method=method,
                                  headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
                                  data=json.dumps(body) if body is not None else None)
    return response.status, response.json() if response.ok else response.text()


def fill_workspace(page: Page, viewer: str, password: str) -> None:
    """What every page needs to show more than its empty state: an environment from an example (active), the shared
    ``default`` one, and a viewer."""
    for body in ({"name": "alpha", "example": "flux-lora"}, {"name": "default"}):
        assert api(page, "POST", "/api/environments", body)[0] == 201
    assert api(page, "PUT", "/api/active-environment", {"name": "alpha"})[0] in (200, 204)
    assert api(page, "POST", "/api/users", {"username": viewer, "email": f"{viewer}@example.org",
                                            "password": password, "levels": ["viewer"]})[0] == 201


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
    options: dict[str, Any] = {}
    if rules:
        options["runOnly"] = {"type": "rule", "values": rules}
    # axe leaves text whose contrast it measured as 1:1 "to review" (it might be hidden on purpose); on these pages
    # such text is meant to be read (white on white under a hovered button), so a measured ratio under AA fails too.
    violations = page.evaluate("""async (options) => {
      const result = await window.axe.run(document, options);
      const unreadable = result.incomplete.filter((v) => v.id === "color-contrast")
        .map((v) => Object.assign({}, v, {impact: "serious", nodes: v.nodes.filter((n) =>
          n.any.some((check) => check.data && check.data.contrastRatio &&
            check.data.contrastRatio < parseFloat(check.data.expectedContrastRatio || "4.5")))}))
        .filter((v) => v.nodes.length);
      return result.violations.concat(unreadable).map((v) => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + ": " +
          (n.failureSummary || n.any.map((check) => check.message).join("; ")).replace(/\\s+/g, " "))}));
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
    # A full-page capture keeps the window's height, so a bar stuck to the window's bottom would land mid-page.
    unstick = """(on) => document.querySelectorAll(on ? "*" : "[data-unstuck]").forEach((e) => {
      if (on && getComputedStyle(e).position === "sticky" && !e.closest("header")) {
        e.dataset.unstuck = ""; e.style.position = "static";
      } else if (!on) { delete e.dataset.unstuck; e.style.position = ""; }
    })"""
    if full_page:
        page.evaluate(unstick, True)
    page.screenshot(path=path, full_page=full_page, animations="disabled", caret="hide")
    if full_page:
        page.evaluate(unstick, False)
    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    reduced.save(path, optimize=True)
    return path


#: Marks every control a keyboard user must reach (visible, enabled, not taken out of the tab order) and lists them;
#: radio buttons count once per group, since Tab enters a group once and arrow keys move inside it.
_CONTROLS = """() => {
  const shown = (e) => {  // checkVisibility also sees the content of a closed <details> as hidden
    const box = e.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && e.checkVisibility({ visibilityProperty: true }) && !e.closest("[inert]");
  };
  const controls = Array.from(document.querySelectorAll(
      "a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]"))
    .filter((e) => !e.disabled && e.tabIndex >= 0 && shown(e));
  const keys = [];
  controls.forEach((e) => {
    e.dataset.walk = e.type === "radio" && e.name ? "radio:" + e.name : "c" + keys.length;
    if (!keys.includes(e.dataset.walk)) keys.push(e.dataset.walk);
  });
  return keys.map((key) => {
    const e = document.querySelector('[data-walk="' + key + '"]');
    return {key: key, what: e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + " " +
      (e.getAttribute("aria-label") || e.textContent || e.name || "").trim().slice(0, 40)};
  });
}"""
#: The focused element and whether its focus shows: an outline of at least 2 px or a ring drawn as a box shadow.
_FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const style = getComputedStyle(e);
  const ring = (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2) || style.boxShadow !== "none";
  return {key: e.dataset.walk || "", ring: ring, what: e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")};
}"""


def keyboard_walk(page: Page) -> tuple[list[str], list[str]]:
    """Presses Tab through the whole page, round to where it began (a page may have put the focus somewhere
    already). Returns the controls Tab never reached and the focused elements whose focus is not visible."""
    controls = {item["key"]: item["what"] for item in page.evaluate(_CONTROLS)}
    reached: list[str] = []
    unseen_focus: list[str] = []
    for _ in range(2 * len(controls) + 20):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused is None:
            continue  # past the last control: the next Tab starts again from the top
        if reached and focused["key"] == reached[0]:
            break  # round once
        reached.append(focused["key"])
        if not focused["ring"]:
            unseen_focus.append(focused["what"])
    return [what for key, what in controls.items() if key not in reached], unseen_focus
