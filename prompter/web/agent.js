// The agent panel: hints over /v1/agents/{id}/hints, the current call's transcript over
// /v1/calls/{id}/live. The agent is the key's own (GET /v1/me); an admin key names the
// agent to watch. Plain JS, no build step. The key stays in this browser only.
"use strict";

const $ = (id) => document.getElementById(id);
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
let hintSocket = null;
let liveSocket = null;
let lastHintId = null;
let retryMs = 1000;
const lines = new Map(); // utterance_id -> element
let timer = null;

function clock(t) {
  // m:ss, or h:mm:ss past an hour
  const h = Math.floor(t / 3600), m = Math.floor((t - h * 3600) / 60);
  const s = String(Math.floor(t % 60)).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + s : m + ":" + s;
}

function timeOfDay(iso) { return new Date(iso).toLocaleTimeString(); }

function setStatus(text) { $("status").textContent = text; }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function sendFeedback(hintId, useful, box) {
  const r = await fetch(`/v1/hints/${encodeURIComponent(hintId)}/feedback`, {
    method: "POST",
    headers: { "Authorization": "Bearer " + $("key").value, "Content-Type": "application/json" },
    body: JSON.stringify({ useful }),
  });
  box.textContent = r.ok ? (useful ? "Thanks: marked useful" : "Thanks: marked not useful")
                         : "Feedback failed (" + r.status + ")";
}

function showHint(h) {
  const list = $("hints");
  if (list.querySelector(".note")) list.textContent = "";
  if (document.getElementById("hint-" + h.hint_id)) return; // a replay: shown already
  const card = el("div", "hint " + h.kind);
  card.id = "hint-" + h.hint_id;
  const head = el("div", "kind");
  head.append(el("span", "at", timeOfDay(h.created_at)), document.createTextNode(h.kind));
  card.append(head, el("h3", "", h.title), el("div", "", h.text));
  const t = h.trigger || {};
  // why it fired: the rule and what was heard (or the silence/absence it watched for)
  const why = [t.rule && "rule " + t.rule, t.matched && "heard \u201c" + t.matched + "\u201d"]
    .filter(Boolean).join(" \u00b7 ");
  if (why) card.append(el("div", "why", "Why: " + why));
  const fb = el("div", "fb");
  const yes = el("button", "", "Useful");
  const no = el("button", "", "Not useful");
  yes.onclick = () => sendFeedback(h.hint_id, true, fb);
  no.onclick = () => sendFeedback(h.hint_id, false, fb);
  fb.append(yes, no);
  card.append(fb);
  list.prepend(card);
  lastHintId = h.hint_id;
}

function showKey(d) {
  // a key the caller (or agent) pressed, in its place in the conversation
  const box = $("transcript");
  if (box.querySelector(".note")) box.textContent = "";
  const line = el("div", "utt dtmf");
  line.append(el("span", "at", clock(d.start)), el("span", "leg", d.leg),
              document.createTextNode("pressed " + d.digit));
  box.append(line);
}

function showUtterance(u) {
  if (u.type === "dtmf") return showKey(u);
  if (u.type !== "utterance") return;
  const box = $("transcript");
  if (box.querySelector(".note")) box.textContent = "";
  let line = lines.get(u.utterance_id);
  if (!line) {
    line = el("div", "utt");
    lines.set(u.utterance_id, line);
    box.append(line);
  }
  line.className = "utt" + (u.final ? "" : " partial");
  const parts = [el("span", "at", clock(u.start)), el("span", "leg", u.leg),
                 document.createTextNode(u.text)];
  // words heard once, not yet stable: shown apart, replaced by the next partial
  if (u.tentative) parts.push(el("span", "tentative", (u.text ? " " : "") + u.tentative));
  line.replaceChildren(...parts);
}

function showCall(c) {
  // the caller, when the call began and how long it has lasted, ticking every second
  $("callbar").hidden = false;
  $("caller").textContent = c.caller ? "Caller " + c.caller : "Caller unknown";
  $("since").textContent = "since " + timeOfDay(c.started_at);
  const began = new Date(c.started_at).getTime();
  const tick = () => { $("timer").textContent = clock(Math.max(0, (Date.now() - began) / 1000)); };
  clearInterval(timer);
  tick();
  timer = setInterval(tick, 1000);
}

function watchCall(c) {
  const callId = c.call_id;
  if (liveSocket) liveSocket.close();
  lines.clear();
  $("transcript").textContent = "";
  $("call").textContent = "call " + callId;
  showCall(c);
  const url = `${wsBase}/v1/calls/${encodeURIComponent(callId)}/live?key=` +
    encodeURIComponent($("key").value);
  liveSocket = new WebSocket(url);
  liveSocket.onmessage = (ev) => showUtterance(JSON.parse(ev.data));
  liveSocket.onclose = (ev) => {
    if (ev.code >= 4000) $("call").textContent = "call " + callId + " (transcript: " + ev.reason + ")";
  };
}

function onMessage(ev) {
  const m = JSON.parse(ev.data);
  if (m.type === "hello") {
    setStatus("connected" + (m.gap ? " (some hints were missed)" : ""));
    retryMs = 1000;
    if (m.calls.length) watchCall(m.calls[m.calls.length - 1]);
  } else if (m.type === "hint") {
    showHint(m);
  } else if (m.type === "call.started") {
    watchCall(m);
  } else if (m.type === "call.ended") {
    $("call").textContent = "call " + m.call_id + " ended";
    clearInterval(timer);
  }
}

async function whoAmI(key) {
  // the agent comes from the key; an admin key may watch any agent of its tenant
  const r = await fetch("/v1/me", { headers: { "Authorization": "Bearer " + key } });
  if (!r.ok) {
    let reason = r.statusText;
    try { reason = (await r.json()).detail || reason; } catch (e) { /* not JSON */ }
    throw new Error(reason);
  }
  return r.json();
}

async function connect() {
  const key = $("key").value.trim();
  if (!key) { setStatus("enter your key"); return; }
  let me;
  try {
    me = await whoAmI(key);
  } catch (e) {
    setStatus("refused: " + e.message);
    return;
  }
  localStorage.setItem("callpipe.key", key);
  $("agent-field").hidden = me.role !== "admin";
  let agent = me.agent_id;
  if (me.role === "admin") {
    agent = $("agent").value.trim();
    if (!agent) { setStatus("admin key: enter the agent to watch"); return; }
    localStorage.setItem("callpipe.agent", agent);
  } else if (me.role !== "agent") {
    setStatus("a " + me.role + " key has no hints: use an agent key");
    return;
  }
  $("who").textContent = "agent " + agent + " \u00b7 " + me.tenant;
  if (hintSocket) { hintSocket.onclose = null; hintSocket.close(); }
  let url = `${wsBase}/v1/agents/${encodeURIComponent(agent)}/hints?key=` + encodeURIComponent(key);
  if (lastHintId) url += "&last_hint_id=" + encodeURIComponent(lastHintId);
  hintSocket = new WebSocket(url);
  setStatus("connecting");
  hintSocket.onmessage = onMessage;
  hintSocket.onclose = (ev) => {
    if (ev.code === 4401 || ev.code === 4403) { setStatus("refused: " + ev.reason); return; }
    setStatus("disconnected; retrying");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 15000);
  };
}

$("agent").value = localStorage.getItem("callpipe.agent") || "";
$("key").value = localStorage.getItem("callpipe.key") || "";
$("connect").onclick = connect;
if ($("key").value) connect();
