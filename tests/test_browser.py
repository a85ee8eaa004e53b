"""The browser viewer end to end in headless Chromium (Debian's, driven by Playwright) against a fresh server.

Screenshots go to artifacts/ (kept by CI as test artifacts, ignored by git).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from server_support import ServerProcess, issue, post

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A freshly installed server (its first-run admin token is printed) at 1x."""
    proc = ServerProcess(tmp_path_factory.mktemp("browser") / "state")
    assert proc.admin_token, proc.lines
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium."""
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def refused(text: str) -> bool:
    """Chromium logs every 4xx answer; a refused console command (401/403) is expected, not a page error."""
    return text.startswith("Failed to load resource: the server responded with a status of 4")


def until(page: Page, expression: str, timeout: float = 60.0) -> Any:
    """Poll a JavaScript expression until it is truthy (the page's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def open_viewer(browser: Browser, server: ServerProcess, width: int = 1280, height: int = 720) -> tuple[Page, list]:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(60_000)  # waits end when their condition holds; a loaded machine is slow
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not refused(msg.text) else None)
    page.goto(server.url + "/")
    until(page, "window.townlet && window.townlet.stream.state && window.townlet.map.agents.size > 0")
    return page, errors


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    """The viewer at 1280x720; fails the test on any page error."""
    viewer, errors = open_viewer(browser, server)
    yield viewer
    viewer.context.close()
    assert not errors


def shot(page: Page, name: str, **kwargs: Any) -> bytes:
    ARTIFACTS.mkdir(exist_ok=True)
    return page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), **kwargs)


def drawn(page: Page) -> dict[str, tuple[float, float]]:
    return {a["id"]: (a["x"], a["y"]) for a in page.evaluate("window.townlet.map.drawn()")}


def admin(server: ServerProcess, cmd: str, **args: Any) -> dict[str, Any]:
    status, body = post(server.url, server.admin_token, cmd, **args)
    assert status == 200, body
    return body


def test_the_page_loads_and_agents_are_drawn_and_move_between_two_screenshots(
    page: Page, server: ServerProcess
) -> None:
    """A fresh server's page shows the map with every agent; two screenshots a moment apart differ."""
    assert page.title().startswith("Townlet")
    assert page.locator("#conn").get_attribute("data-state") == "live"
    assert len(drawn(page)) == 8
    # Fast-forward to the morning, when the town is up and about. At 100x (400 ticks/s) the town overshoots
    # tick 290 by a few dozen ticks at most; at "max" it could run into the working day before 1x takes hold.
    admin(server, "speed", value="100x")
    server.wait_tick(290)
    admin(server, "speed", value="1x")
    until(page, "window.townlet.stream.state.clock.speed === '1x' && window.townlet.stream.state.tick > 290")
    canvas = page.locator("#map")
    ARTIFACTS.mkdir(exist_ok=True)
    before_png = canvas.screenshot(path=str(ARTIFACTS / "browser-moving-1.png"))
    before = drawn(page)
    deadline = time.monotonic() + 60  # usually ten ticks (2.5 s) at 1x; a loaded machine ticks and draws slower
    while True:
        after = drawn(page)
        moved = [a for a in before if a in after and math.dist(before[a], after[a]) >= 1]
        if moved or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert moved, (before, after)
    after_png = canvas.screenshot(path=str(ARTIFACTS / "browser-moving-2.png"))
    assert before_png != after_png
    shot(page, "loaded-1280x720")


def test_clicking_an_agent_opens_its_card_with_its_real_needs(page: Page, server: ServerProcess) -> None:
    """Paused, a click on an agent opens its card, whose needs equal the server's for that agent."""
    admin(server, "pause")
    until(page, "window.townlet.stream.state.clock.paused === true")
    page.wait_for_timeout(500)  # let the last step's animation finish
    where = drawn(page)
    alone = [a for a in sorted(where) if all(math.dist(where[a], where[b]) >= 2 for b in where if b != a)]
    target = (alone or sorted(where))[0]
    point = page.evaluate(f"window.townlet.map.screenOf({target!r})")
    page.mouse.click(point["x"], point["y"])
    page.wait_for_selector(f"#card[data-agent='{target}']")
    shown = {
        el.get_attribute("data-need"): float(el.get_attribute("data-value") or "nan")
        for el in page.locator("#card [data-need]").all()
    }
    viewer = issue(server.state_dir, "viewer", "card-check")
    status, body = post(server.url, viewer, "agent", agent=target)
    assert status == 200
    assert shown == body["data"]["needs"]
    texts = page.locator("#card [data-need] .value").all_inner_texts()
    assert texts == [f"{body['data']['needs'][n]:.2f}" for n in ("hunger", "hygiene", "energy", "social")]
    assert page.locator("#card-title").inner_text() == target
    shot(page, "card")


def test_the_ticker_receives_narration_and_a_click_focuses_its_agent(page: Page, server: ServerProcess) -> None:
    """At speed the narration ticker fills with lines; clicking a line about an agent opens that agent."""
    admin(server, "speed", value="100x")
    admin(server, "pause", on=False)
    line = page.locator("#ticker button[data-agent]").first
    line.wait_for(timeout=60_000)
    agent = line.get_attribute("data-agent")
    assert agent and line.inner_text()
    admin(server, "speed", value="1x")
    line.click()
    page.wait_for_selector(f"#card[data-agent='{agent}']")
    assert page.locator("#ticker-empty").is_hidden()
    shot(page, "ticker")


def test_an_admin_token_pauses_the_town_and_spawns_an_agent_that_appears_on_the_map(
    page: Page, server: ServerProcess
) -> None:
    """In the console panel an admin token pauses the town, then spawns an agent drawn where it was put."""
    token = server.admin_token or ""
    page.fill("#token-input", token)
    page.click("#token-use")
    page.wait_for_selector("#token-status[data-role='admin']")
    assert page.input_value("#token-input") == ""  # the token leaves the page's fields once used
    page.click("button[data-speed='pause']")
    page.wait_for_selector("#speed-now.paused")
    assert page.locator("button[data-speed='pause']").get_attribute("aria-pressed") == "true"
    page.fill("#command-input", "spawn")
    page.fill("#args-input", "agent=visitor_b x=16 y=11")
    page.click("#command-run")
    until(page, "window.townlet.map.agents.has('visitor_b')")
    page.wait_for_timeout(500)
    assert drawn(page)["visitor_b"] == (16, 11)
    assert page.locator("#agents button[data-agent='visitor_b']").count() == 1
    assert '"ok": true' in page.inner_text("#console-output")
    tick = page.evaluate("window.townlet.stream.state.tick")
    page.wait_for_timeout(600)
    assert page.evaluate("window.townlet.stream.state.tick") == tick  # paused: time stands still
    storage = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    assert token not in storage and token not in page.content()
    shot(page, "admin-spawn")
    page.locator("#map").screenshot(path=str(ARTIFACTS / "browser-admin-spawn-map.png"))


def test_a_viewer_tokens_admin_command_is_refused_with_a_visible_error(page: Page, server: ServerProcess) -> None:
    """A viewer token may read but its admin command shows E_FORBIDDEN in a visible alert."""
    page.fill("#token-input", issue(server.state_dir, "viewer", "spectator"))
    page.click("#token-use")
    page.wait_for_selector("#token-status[data-role='viewer']")
    options = page.evaluate("[...document.querySelectorAll('#command-list option')].map(o => o.value)")
    assert "status" in options and "spawn" not in options  # completion offers what the role may run
    page.fill("#command-input", "spawn")
    page.fill("#args-input", "agent=intruder")
    page.click("#command-run")
    error = page.locator("#console-error")
    error.wait_for(state="visible")
    assert "E_FORBIDDEN" in error.inner_text() and error.get_attribute("role") == "alert"
    assert not page.evaluate("window.townlet.map.agents.has('intruder')")
    page.click("button[data-speed='10x']")  # the header's speed buttons say so too
    until(page, "document.querySelector('#speed-note').textContent.includes('E_FORBIDDEN')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("section.console").screenshot(path=str(ARTIFACTS / "browser-viewer-refused.png"))
    page.fill("#command-input", "status")
    page.fill("#args-input", "")
    page.click("#command-run")
    error.wait_for(state="hidden")
    # The answer arrives after the error box hides: wait for it rather than read the previous one.
    until(page, "document.querySelector('#console-output').textContent.includes('\"cmd\": \"status\"')")
    assert '"ok": true' in page.inner_text("#console-output")


def test_the_viewer_is_keyboard_accessible_and_fits_a_phone(browser: Browser, server: ServerProcess) -> None:
    """Tab reaches the map, arrows and Enter open a card, focus is visible; at 390x844 nothing overflows."""
    page, errors = open_viewer(browser, server)
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "map":
            break
    assert page.evaluate("document.activeElement.id") == "map"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    until(page, "document.querySelector('#card').dataset.agent !== ''")
    first = page.locator("#agents button").first
    first.focus()
    page.keyboard.press("Space")
    page.wait_for_selector(f"#card[data-agent='{first.get_attribute('data-agent')}']")
    unnamed = page.evaluate("""[...document.querySelectorAll('button, input, canvas')]
        .filter(e => !(e.getAttribute('aria-label') || e.textContent.trim() || e.labels?.length
                       || e.getAttribute('placeholder'))).length""")
    assert unnamed == 0
    page.context.close()
    phone, phone_errors = open_viewer(browser, server, 390, 844)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    box = phone.locator("#map").bounding_box()
    assert box is not None and box["width"] <= 390 and box["height"] > 200
    until(phone, "document.querySelectorAll('#agents button').length >= 8")  # the list fills from the stream
    shot(phone, "phone-390x844", full_page=True)
    phone.context.close()
    assert not errors and not phone_errors


@pytest.fixture(scope="module")
def learned_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server driven by the shipped default policy, with a second (untrained) policy in its registry."""
    from townlet.training.registry import PolicyRegistry
    from training_support import tiny_checkpoint

    root = tmp_path_factory.mktemp("learned")
    with PolicyRegistry(root / "registry.sqlite") as registry:
        other = registry.register(str(tiny_checkpoint(root / "other.pt", seed=9))).policy_hash
    proc = ServerProcess(
        root / "state", "--policy", "default", "--speed", "100x", "--registry", str(root / "registry.sqlite")
    )
    yield proc, other
    proc.stop()


@pytest.mark.slow
def test_the_policy_inspector_shows_the_servers_numbers_and_a_swap(
    browser: Browser, learned_server: tuple[ServerProcess, str]
) -> None:
    """The card's bars and value are the server's `agent` answer for that agent; a console swap shows up."""
    from townlet.policy import shipped

    server, other = learned_server
    page, errors = open_viewer(browser, server)
    try:
        server.wait_tick(300)
        admin(server, "pause")
        until(page, "window.townlet.stream.state.clock.paused === true")
        viewer = issue(server.state_dir, "viewer", "inspector-check")
        answers = {
            name: post(server.url, viewer, "agent", agent=name)[1]["data"]
            for name in page.evaluate("Object.keys(window.townlet.stream.state.agents)")
        }
        target = next(name for name, data in sorted(answers.items()) if "policy" in data)
        expected = answers[target]["policy"]
        page.click(f"#agents button[data-agent='{target}']")
        page.wait_for_selector(f"#card[data-agent='{target}'] [data-testid='policy'] .prob")
        card = page.locator("#card [data-testid='policy']")
        assert card.get_attribute("data-hash") == expected["hash"] == shipped.default_hash()
        rows = [
            (row.get_attribute("data-option"), float(row.get_attribute("data-p") or "nan"))
            for row in page.locator("#card [data-testid='policy'] .prob").all()
        ]
        assert rows == [(option, p) for option, p in expected["top"]] and len(rows) >= 3
        assert page.locator("#card .prob .value").all_inner_texts() == [f"{p:.2f}" for _, p in expected["top"]]
        value = page.locator("#card [data-testid='policy-value']")
        assert float(value.get_attribute("data-value") or "nan") == expected["value"]
        assert value.inner_text() == f"value {expected['value']:.3f}"
        shot(page, "policy-inspector")
        swapped = admin(server, "policy", op="swap", ref=other[:10])
        assert swapped["data"]["policy"]["hash"] == other
        until(page, f"document.querySelector(\"#card [data-testid='policy']\").dataset.hash === {other!r}")
        assert "no decision yet" in page.locator("#card [data-testid='policy']").inner_text()
        admin(server, "pause", on=False)
        until(page, "document.querySelector(\"#card [data-testid='policy'] .prob\") !== null", timeout=60)
        assert page.locator("#card [data-testid='policy']").get_attribute("data-hash") == other
        shot(page, "policy-inspector-swapped")
    finally:
        page.context.close()
    assert not errors


@pytest.mark.slow
def test_a_town_of_a_thousand_streams_the_viewport_draws_pans_and_selects(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """1,000 agents on 192x192: the viewport stream draws, follows zoom and pan, selects, and keeps frames quick."""
    where = tmp_path_factory.mktemp("big")
    big = ServerProcess(
        where / "state",
        "--set",
        "population.agents=1000",
        "--set",
        "town.scale=4",
        # a short canary baseline, so the big town starts within the fixture's minute
        "--set",
        "stability.baseline_windows=1",
        "--set",
        "stability.window_ticks=50",
        "--set",
        f"stability.baseline_cache={where / 'baselines'}",
    )
    view = "window.townlet.stream.state.view"
    try:
        page, errors = open_viewer(browser, big)
        assert page.evaluate("window.townlet.town.width") == 192
        until(page, f"{view} && window.townlet.stream.state.summary.population === 1000", timeout=60)
        page.wait_for_timeout(2000)  # some frames of the whole town
        whole = page.evaluate("({ms: window.townlet.map.frameMs, drawn: window.townlet.map.drawnAgents})")
        served = page.evaluate(f"{view}.rect")
        assert served[2] - served[0] + 1 == 96  # the whole town is shown; 96 tiles a side of it are streamed
        assert 0 < whole["drawn"] < 1000 and page.evaluate("window.townlet.map.agents.size") < 1000
        assert "in view of 1000" in page.inner_text("#agent-count")
        image = shot(page, "big-town")
        assert len(image) > 20_000
        admin(big, "pause")
        until(page, "window.townlet.stream.state.clock.paused === true")
        page.evaluate("window.townlet.map.zoomBy(8)")
        # the view settles, the page says so, and the server streams exactly it (a fresh snapshot, even paused)
        rect = "(() => { const v = window.townlet.map.visible(); return [v.x0, v.y0, v.x1, v.y1].join(); })()"
        until(page, f"{view}.rect.join() === {rect}")
        inside = (
            "(() => { const s = window.townlet.stream.state; const [x0, y0, x1, y1] = s.view.rect;"
            " const m = s.view.margin; return Object.values(s.agents).every(a =>"
            " a.x >= x0 - m && a.x <= x1 + m && a.y >= y0 - m && a.y <= y1 + m); })()"
        )
        assert page.evaluate(inside)
        page.wait_for_timeout(600)
        zoomed = page.evaluate("window.townlet.map.drawnAgents")
        target = page.evaluate(
            "(() => { const m = window.townlet.map; const c = m.canvas.getBoundingClientRect();"
            " const seen = m.drawn().map(a => ({id: a.id, p: m.screenOf(a.id)}))"
            ".filter(a => a.p.x > c.left + 20 && a.p.x < c.right - 20 && a.p.y > c.top + 20 && a.p.y < c.bottom - 20)"
            # an agent sharing its spot with another is not the one a click there picks: take one alone
            ".filter(a => m.pick(a.p.x - c.left, a.p.y - c.top) === a.id);"
            " return seen.length ? seen[0] : null; })()"
        )
        assert zoomed > 0 and target is not None
        page.mouse.click(target["p"]["x"], target["p"]["y"])
        page.wait_for_selector(f"#card[data-agent='{target['id']}']")
        shot(page, "big-town-zoomed")
        before = set(page.evaluate("Object.keys(window.townlet.stream.state.agents)"))
        # pan to the opposite corner: the agents there arrive, those left behind go, the selected one stays
        page.evaluate(
            "(() => { const m = window.townlet.map; const c = m.center;"
            " m.center = {x: c.x < 96 ? 170 : 22, y: c.y < 96 ? 170 : 22}; })()"
        )
        until(page, f"{view}.rect.join() === {rect}")
        assert page.evaluate(inside.replace("every(a =>", "every(a => a === s.agents[" + repr(target["id"]) + "] ||"))
        after = set(page.evaluate("Object.keys(window.townlet.stream.state.agents)"))
        assert target["id"] in after and after - {target["id"]} and not (after & before) - {target["id"]}
        page.wait_for_timeout(600)
        assert page.locator("#card").get_attribute("data-agent") == target["id"]  # its card stays live
        shot(page, "big-town-panned")
        stats = page.evaluate("window.townlet.stream.stats")
        print(
            f"big town, viewport stream: frame {whole['ms']:.1f} ms whole, {zoomed} agents drawn zoomed; stream "
            f"{stats['bytes'] / max(stats['frames'], 1):.0f} bytes per frame over {stats['frames']} frames, "
            f"{stats['views']} view messages, {stats['refused']} refused"
        )
        assert whole["ms"] < 100 and stats["refused"] == 0
        assert stats["messages"] > stats["frames"] > 0  # ticks arrive as one frame each, with their events
        page.context.close()
        assert not errors
    finally:
        big.stop()
