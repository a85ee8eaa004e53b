// The agent card: needs, wallet, option, job and lateness, top friends and rivals, last event, policy inspector.

import { el, facts, fixed, $ } from "./dom.js";

// Need colours follow the config's thresholds, served in /api/town (needs.ok_threshold, needs.critical).
function needColors(town) {
  const limits = town.need_thresholds;
  return [[limits.ok, "var(--good)"], [limits.critical, "var(--warn)"], [Infinity, "var(--bad)"]];
}

function needBar(name, value, colors) {
  const pct = Math.round(Math.max(0, Math.min(1, value)) * 100);
  const color = colors.find(([limit]) => value < limit)[1];
  return el("div", { class: "need", "data-need": name, "data-value": value },
    el("span", { text: name }),
    el("span", {
      class: "track", role: "progressbar", "aria-label": `${name} deficit`, "aria-valuemin": 0,
      "aria-valuemax": 100, "aria-valuenow": pct,
    }, el("span", { class: "fill", style: { width: `${pct}%`, background: color, display: "block" } })),
    el("span", { class: "value", text: fixed(value, 2) }));
}

function tieList(title, ties, field) {
  if (!ties || !ties.length) return null;
  return [
    el("p", { class: "section-title", text: title }),
    el("ul", { class: "ties" }, ties.map((t) => el("li", {}, `${t.id} (${field} ${fixed(t[field], 2)})`))),
  ];
}

// The policy inspector: the learned policy's option probabilities at the agent's last decision, best first,
// and its value estimate (telemetry's agent.policy); otherwise who drives the agent (state.policy, a possession).
function policyInspector(agent, town) {
  const policy = agent.policy;
  const driving = town || { name: "scripted", hash: "scripted", source: "builtin" };
  if (!policy || !Array.isArray(policy.top)) {
    let text = driving.name;
    if (driving.hash && driving.hash !== driving.name) text += ` (${driving.hash})`;
    if (agent.possessed_by) text = `possessed by ${agent.possessed_by} (overrides ${text})`;
    else if (driving.source !== "builtin") text += " · no decision yet";
    return el("p", { "data-testid": "policy", "data-hash": driving.hash, text });
  }
  const name = driving.hash === policy.hash && driving.name !== policy.hash ? `${driving.name} · ` : "";
  return el("div", { "data-testid": "policy", "data-hash": policy.hash },
    el("p", { class: "muted", text: `${name}${policy.hash}` }),
    el("div", { class: "probs", role: "list", "aria-label": "Option probabilities at the last decision" },
      policy.top.map(([option, p]) => el("div", {
        class: "prob", role: "listitem", "data-option": option, "data-p": p,
      },
      el("span", { text: option }),
      el("span", { class: "track" }, el("span", {
        class: "fill", style: { width: `${Math.round(Math.max(0, Math.min(1, p)) * 100)}%`, display: "block" },
      })),
      el("span", { class: "value", text: fixed(p, 2) })))),
    el("p", { "data-testid": "policy-value", "data-value": policy.value }, `value ${fixed(policy.value, 3)}`));
}

export class AgentCard {
  constructor(town) {
    this.town = town;
    this.needColors = needColors(town);
    this.root = $("card");
    this.title = $("card-title");
    this.body = $("card-body");
    this.empty = $("card-empty");
    this.id = null;
    this.lastEvents = new Map(); // agent id -> last event message about it
  }

  noteEvent(e) {
    if (e.kind === "narration") return;
    if (e.agent) this.lastEvents.set(e.agent, e);
    if (e.other) this.lastEvents.set(e.other, e);
  }

  show(id, state) {
    this.id = id;
    this.render(state);
  }

  render(state) {
    const id = this.id;
    const agent = id && state && state.agents ? state.agents[id] : null;
    this.root.dataset.agent = agent ? id : "";
    if (!agent) {
      this.title.textContent = id ? `${id} (gone)` : "Agent";
      this.body.hidden = true;
      this.empty.hidden = false;
      return;
    }
    this.title.textContent = id;
    this.empty.hidden = true;
    this.body.hidden = false;
    const job = agent.job;
    const last = this.lastEvents.get(id);
    const ties = agent.ties || {};
    const content = [
      el("p", { class: "muted", "data-testid": "card-tick", "data-tick": state.tick },
        `${agent.activity}${agent.asleep ? " · asleep" : ""} at ${agent.place || `(${agent.x}, ${agent.y})`} · tick ${state.tick}`),
      el("div", { class: "needs", "aria-label": "Needs (deficits: 0 satisfied, 1 desperate)" },
        Object.entries(agent.needs).map(([name, value]) => needBar(name, value, this.needColors))),
      facts([
        ["option", agent.option || "none"],
        ["wallet", fixed(agent.wallet, 2)],
        job ? ["job", `${job.title} ${job.shift[0]}–${job.shift[1]}${job.on_shift ? " · on shift" : ""}${job.clocked_in ? " · clocked in" : ""}`] : ["job", "none"],
        job ? ["lateness", `late ${job.late} · attended ${job.attended} · absent ${job.absent}`] : null,
        agent.possessed_by ? ["possessed by", agent.possessed_by] : null,
        ["last event", last ? `${last.kind}${last.detail ? ` (${last.detail})` : ""} at tick ${last.tick}` : "–"],
      ], { "data-testid": "card-facts" }),
      tieList("Friends", ties.friends, "trust"),
      tieList("Rivals", ties.rivals, "rivalry"),
      el("p", { class: "section-title", text: "Policy" }),
      policyInspector(agent, state.policy),
    ];
    this.body.replaceChildren(...content.flat().filter(Boolean));
  }
}
