// The viewer's entry point: fetch the map, follow the stream, draw at the display's pace.

import { AgentCard } from "./card.js";
import { ConsolePanel } from "./console.js";
import { $ } from "./dom.js";
import { MapView } from "./map.js";
import { AgentList, HealthPanel, KpiCharts, Ticker } from "./panels.js";
import { TelemetryStream, streamUrl } from "./stream.js";

async function start() {
  const response = await fetch("api/town", { cache: "no-store" });
  const town = await response.json();
  const map = new MapView($("map"), town);
  const viewRect = () => { const v = map.visible(); return [v.x0, v.y0, v.x1, v.y1]; };
  const stream = new TelemetryStream(() => streamUrl(window.location, viewRect()));
  const card = new AgentCard(town);
  const consolePanel = new ConsolePanel();
  const list = new AgentList((id) => map.select(id));
  const ticker = new Ticker((id) => map.select(id, { focus: true }));
  const charts = new KpiCharts();
  const health = new HealthPanel(stream);
  let dirty = false;

  const select = (id) => {
    list.selected = id;
    if (stream.viewport) sendView(true); // the server sends the selected agent wherever it is
    card.show(id, stream.state);
    if (stream.state) list.render(stream.state);
  };
  map.addEventListener("select", (e) => select(e.detail.id));
  map.addEventListener("cursor", (e) => {
    const a = e.detail.agent;
    $("map").setAttribute("aria-label", `Town map. ${e.detail.id}: ${a.option || a.activity} at ${a.place || "outdoors"}. Enter opens its card.`);
  });

  stream.addEventListener("state", (e) => {
    const state = e.detail.state;
    map.setState(state);
    charts.add(state);
    dirty = true;
  });
  stream.addEventListener("event", (e) => card.noteEvent(e.detail));
  stream.addEventListener("status", (e) => {
    const conn = $("conn");
    conn.dataset.state = e.detail.connected ? "live" : "down";
    $("conn-text").textContent = e.detail.connected ? "live" : "reconnecting…";
  });

  $("overlay-ties").addEventListener("change", (e) => { map.showTies = e.target.checked; });
  $("zoom-in").addEventListener("click", () => map.zoomBy(1.5));
  $("zoom-out").addEventListener("click", () => map.zoomBy(1 / 1.5));
  $("zoom-fit").addEventListener("click", () => map.zoomBy(0));
  const note = $("speed-note");
  const pace = async (speed) => {
    note.textContent = "";
    if (!consolePanel.token) {
      note.textContent = "Paste an admin token in the console panel first.";
      return;
    }
    const paused = stream.state && stream.state.clock.paused;
    const body = speed === "pause"
      ? await consolePanel.run("pause", { on: true })
      : await consolePanel.run("speed", { value: speed });
    if (body && body.ok && speed !== "pause" && paused) await consolePanel.run("pause", { on: false });
    if (body && !body.ok) note.textContent = `${body.code}: ${body.message}`;
  };
  for (const button of document.querySelectorAll("[data-speed]")) {
    button.addEventListener("click", () => pace(button.dataset.speed));
  }

  const header = (state) => {
    const c = state.clock;
    $("clock-day").textContent = `Day ${c.day}`;
    $("clock-time").textContent = c.time;
    $("clock-tick").textContent = `tick ${state.tick}`;
    const speed = $("speed-now");
    speed.textContent = c.paused ? "paused" : (c.speed || "–");
    speed.classList.toggle("paused", Boolean(c.paused));
    for (const b of document.querySelectorAll("[data-speed]")) {
      const on = c.paused ? b.dataset.speed === "pause" : b.dataset.speed === c.speed;
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
  };

  // A large town streams the viewport only: tell the server what is shown once the view has settled (debounced).
  let sentView = "";
  let seenView = "";
  let seenAt = 0;
  const sendView = (now) => {
    const rect = viewRect();
    const key = `${rect.join(",")}|${map.selected || ""}`;
    if (now !== true) {
      if (key !== seenView) {
        seenView = key;
        seenAt = now;
        return;
      }
      if (key === sentView || now - seenAt < 150) return;
    }
    if (stream.sendView(rect, map.selected)) sentView = key;
  };
  stream.addEventListener("refused", (e) => console.warn(`townlet: view refused: ${e.detail.code} ${e.detail.message}`));

  let lastPanels = 0;
  let lastHealth = 0;
  const frame = (now) => {
    map.render();
    if (stream.viewport) sendView(now);
    const state = stream.state;
    // panels need not follow a fast town frame by frame: 5 updates a second is plenty to read
    if (dirty && state && now - lastPanels > 200) {
      dirty = false;
      lastPanels = now;
      header(state);
      list.render(state);
      ticker.render(state);
      card.render(state);
      charts.render();
    }
    if (now - lastHealth > 500) {
      lastHealth = now;
      health.render(state);
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  stream.connect();
  window.townlet = { town, stream, map, card, console: consolePanel }; // for tests and the curious
}

start().catch((err) => {
  $("conn").dataset.state = "down";
  $("conn-text").textContent = `cannot start: ${err.message}`;
});
