// The agent panel: hints over /v1/agents/{id}/hints, the current call's transcript over
// /v1/calls/{id}/live. Plain JS, no build step. The key stays in this browser only.
"use strict";

const $ = (id) => document.getElementById(id);
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
let hintSocket = null;
let liveSocket = null;
let lastHintId = null;
let retryMs = 1000;
const lines = new Map(); // utterance_id -> element

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
  card.append(el("div", "kind", h.kind), el("h3", "", h.title), el("div", "", h.text));
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
  line.append(el("span", "leg", d.leg), document.createTextNode("pressed " + d.digit));
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
  const parts = [el("span", "leg", u.leg), document.createTextNode(u.text)];
  // words heard once, not yet stable: shown apart, replaced by the next partial
  if (u.tentative) parts.push(el("span", "tentative", (u.text ? " " : "") + u.tentative));
  line.replaceChildren(...parts);
}

function watchCall(callId) {
  if (liveSocket) liveSocket.close();
  lines.clear();
  $("transcript").textContent = "";
  $("call").textContent = "call " + callId;
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
    if (m.calls.length) watchCall(m.calls[m.calls.length - 1].call_id);
  } else if (m.type === "hint") {
    showHint(m);
  } else if (m.type === "call.started") {
    watchCall(m.call_id);
  } else if (m.type === "call.ended") {
    $("call").textContent = "call " + m.call_id + " ended";
  }
}

function connect() {
  const agent = $("agent").value.trim();
  const key = $("key").value.trim();
  if (!agent || !key) { setStatus("enter your agent id and key"); return; }
  localStorage.setItem("callpipe.agent", agent);
  localStorage.setItem("callpipe.key", key);
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
if ($("agent").value && $("key").value) connect();
