// Kairo's operator console: plain DOM, no framework, everything from the
// router's own /v1 API. Event data is shown with textContent only, never as
// HTML. The bearer token, when the router needs one, lives in this page's
// memory only.
"use strict";

const REFRESH_MS = 2000;
let token = null;
let previous = null;
let selectedEvent = null;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child ?? ""));
  }
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    document.getElementById("login").hidden = false;
    throw new Error("the router needs its token");
  }
  return response;
}

async function json(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.status + " " + path);
  return body;
}

function when(text) {
  return text ? text.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC") : "";
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
  const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

function fill(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const columns = document.querySelectorAll(`#${table} thead th`).length;
    body.append(el("tr", {}, el("td", { colSpan: columns, className: "hint" }, "Nothing here.")));
  }
}

function counter(metrics, name) {
  let total = 0;
  for (const line of metrics.split("\n")) {
    if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
    }
  }
  return total;
}

async function overview() {
  const status = await json("/v1/status");
  const metrics = await (await api("/metrics")).text();
  const now = { t: performance.now(), events: counter(metrics, "kairo_events_accepted_total"),
    actions: counter(metrics, "kairo_action_attempts_total") };
  if (previous) {
    const seconds = Math.max((now.t - previous.t) / 1000, 0.001);
    document.getElementById("eventsRate").textContent = ((now.events - previous.events) / seconds).toFixed(1);
    document.getElementById("actionsRate").textContent = ((now.actions - previous.actions) / seconds).toFixed(1);
  }
  previous = now;
  document.getElementById("eventsTotal").textContent = now.events;
  document.getElementById("actionsTotal").textContent = now.actions;
  for (const key of ["inbox", "outbox", "deadLetters"]) {
    document.getElementById(key).textContent = status[key];
  }
  const ready = document.getElementById("ready");
  ready.textContent = status.ready ? "ready" : "not ready";
  ready.title = status.notReadyReason || "";
  document.getElementById("uptime").textContent = duration(status.uptimeSeconds);
  document.getElementById("version").textContent = status.version;
}

async function rules() {
  const listed = await json("/v1/rules");
  fill("rulesTable", listed.map((rule) => {
    const name = el("td", {}, rule.name);
    if (rule.shadow) name.append(el("span", { className: "badge" }, "shadow"));
    const row = el("tr", { className: "clickable", title: "Show the source" }, name,
      el("td", {}, rule.kind + (rule.title ? ": " + rule.title : "")),
      el("td", {}, rule.evaluations), el("td", {}, rule.fires), el("td", {}, rule.errors),
      el("td", {}, when(rule.lastFiredAt)), el("td", { className: "error" }, rule.lastError || ""));
    row.dataset.rule = rule.name;
    row.onclick = () => source(rule.name).catch((e) => showError(e.message));
    return row;
  }));
}

async function source(name) {
  const rule = await json("/v1/rules/" + encodeURIComponent(name));
  const box = document.getElementById("ruleSource");
  box.querySelector("h2").textContent = rule.name;
  box.querySelector("p").textContent = rule.kind + ", " + rule.file;
  box.querySelector("pre").textContent = rule.source;
  box.hidden = false;
}

async function recentEvents() {
  const text = await (await api("/v1/events?last=200")).text();
  const lines = text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  const query = document.getElementById("query").value.trim();
  const found = lines.filter(({ event }) => !query ||
    [event.id, event.simId, event.imsi].some((v) => v && String(v).includes(query)));
  fill("eventsTable", found.map(({ event, receivedAt, source: from }) => {
    const row = el("tr", { className: "clickable" }, el("td", {}, when(receivedAt)),
      el("td", {}, event.id), el("td", {}, event.eventType || ""), el("td", {}, event.simId || ""),
      el("td", {}, event.imsi || ""), el("td", {}, from));
    row.dataset.event = event.id;
    row.onclick = () => explain(event.id).catch((e) => showError(e.message));
    return row;
  }));
  if (query && !found.length) await explain(query).catch(() => {});
}

function table(headings, rows) {
  return el("div", { className: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells)))));
}

async function explain(id) {
  const record = await json("/v1/events/" + encodeURIComponent(id));
  selectedEvent = id;
  const box = document.getElementById("eventDetail");
  const rules = record.trace.rules.map((r) => [el("td", {}, r.rule + (r.shadow ? " (shadow)" : "")),
    el("td", { className: "outcome-" + r.outcome }, r.outcome), el("td", {}, r.reason || "")]);
  const handlers = (record.trace.handlers || []).map((h) => [el("td", {}, h.handler),
    el("td", { className: "outcome-" + h.outcome }, h.outcome), el("td", {}, h.reason || "")]);
  const actions = record.actions.map((a) => [el("td", {}, a.action), el("td", {}, a.rule),
    el("td", { className: "status-" + a.status }, a.status), el("td", {}, a.attempts),
    el("td", { className: "error" }, a.lastError || "")]);
  box.replaceChildren(el("h2", {}, "Event " + record.id),
    el("p", { className: "hint" }, `received ${when(record.receivedAt)} from ${record.source}, evaluated ${when(record.evaluatedAt)}`),
    el("h2", {}, "Rules"), table(["Rule", "Outcome", "Why"], rules),
    el("h2", {}, "Handlers"), table(["Handler", "Outcome", "Why"], handlers),
    el("h2", {}, "Actions"), table(["Action", "Rule", "Status", "Attempts", "Last error"], actions),
    el("h2", {}, "Event"), el("pre", {}, JSON.stringify(record.event, null, 2)));
  box.hidden = false;
}

async function schedule() {
  const actions = await json("/v1/scheduled");
  fill("scheduleTable", actions.map((a) => {
    const cancel = el("button", { className: "danger", type: "button" }, "Cancel");
    cancel.onclick = () => act(`DELETE /v1/scheduled/${encodeURIComponent(a.key)}`);
    const row = el("tr", {}, el("td", {}, when(a.dueAt)), el("td", {}, a.state), el("td", {}, a.action),
      el("td", {}, a.rule), el("td", {}, a.eventId), el("td", {}, a.attempts),
      el("td", { className: "error" }, a.lastError || ""), el("td", {}, cancel));
    row.dataset.key = a.key;
    return row;
  }));
}

async function deadLetters() {
  const letters = await json("/v1/dead-letters");
  fill("deadTable", letters.map((l) => {
    const buttons = el("td", {});
    if (l.kind === "action") {
      const retry = el("button", { type: "button" }, "Retry");
      retry.onclick = () => act("POST /v1/dead-letters/retry", { ids: [l.id] });
      buttons.append(retry, " ");
    }
    const drop = el("button", { className: "danger", type: "button" }, "Drop");
    drop.onclick = () => act(`DELETE /v1/dead-letters/${encodeURIComponent(l.id)}`);
    buttons.append(drop);
    const row = el("tr", {}, el("td", {}, new Date(l.failedAtMs).toISOString().replace("T", " ").slice(0, 19) + " UTC"),
      el("td", {}, l.id), el("td", {}, l.kind), el("td", {}, l.action ? l.action.request.action : l.source || ""),
      el("td", { className: "error" }, l.error), buttons);
    row.dataset.id = l.id;
    return row;
  }));
}

async function act(what, body) {
  const [method, path] = what.split(" ");
  const options = { method };
  if (body) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const response = await api(path, options).catch((e) => showError(e.message));
  if (response && !response.ok) {
    const answer = await response.json().catch(() => ({}));
    showError(answer.error || `${method} ${path}: ${response.status}`);
  }
  await refresh();
}

const views = { overview, rules, events: recentEvents, schedule, dead: deadLetters };

function currentTab() {
  const tab = location.hash.slice(1);
  return views[tab] ? tab : "overview";
}

async function refresh() {
  const tab = currentTab();
  try {
    await overview();
    if (tab !== "overview") await views[tab]();
    document.getElementById("live").className = "";
    showError(null);
  } catch (e) {
    document.getElementById("live").className = "stale";
    showError(e.message);
  }
}

function showTab() {
  const tab = currentTab();
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== tab;
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.tab === tab);
  refresh();
}

document.getElementById("login").onsubmit = (event) => {
  event.preventDefault();
  token = document.getElementById("token").value;
  document.getElementById("login").hidden = true;
  refresh();
};
document.getElementById("search").onsubmit = (event) => {
  event.preventDefault();
  recentEvents().catch((e) => showError(e.message));
};
window.addEventListener("hashchange", showTab);
showTab();
setInterval(refresh, REFRESH_MS);
