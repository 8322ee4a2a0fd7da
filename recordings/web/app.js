// The analyst page: search, a result list, and a call view whose player seeks to a hit.
// Plain browser JavaScript, no build step. The API key stays in localStorage and goes
// out only as an Authorization header.
"use strict";

const KEY_STORAGE = "callpipe.apiKey";
const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);
const state = { page: 1, total: 0, callId: null, audioUrl: null, pendingSeek: null };

function apiKey() { return $("api-key").value.trim(); }

async function api(path, asBlob = false) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + apiKey() } });
  if (!resp.ok) {
    let reason = resp.statusText;
    try { reason = (await resp.json()).detail || reason; } catch (e) { /* not JSON */ }
    throw new Error(resp.status + ": " + reason);
  }
  return asBlob ? resp.blob() : resp.json();
}

function clock(t) {
  const m = Math.floor(t / 60), s = (t - m * 60).toFixed(1).padStart(4, "0");
  return m + ":" + s;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function searchParams() {
  const p = new URLSearchParams({ q: $("q").value, page: state.page, page_size: PAGE_SIZE });
  const opt = { from: "f-from", to: "f-to", agent: "f-agent", leg: "f-leg",
                direction: "f-direction", sort: "f-sort" };
  for (const [name, id] of Object.entries(opt)) {
    const v = $(id).value.trim();
    if (v) p.set(name, v);
  }
  return p;
}

async function search() {
  setStatus("Searching…");
  $("results").replaceChildren();
  let data;
  try {
    data = await api("/v1/search?" + searchParams());
  } catch (e) {
    setStatus(e.message, true);
    $("pager").hidden = true;
    return;
  }
  state.total = data.total;
  // past the index's count cap the total is a floor ("1000+ matches")
  const shown = data.total + (data.total_exact ? "" : "+");
  setStatus(shown + (data.total === 1 && data.total_exact ? " match" : " matches"));
  for (const hit of data.hits) $("results").append(hitItem(hit));
  const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
  $("pager").hidden = pages <= 1;
  $("page-info").textContent = "page " + state.page + " of " + pages;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = state.page >= pages;
}

function hitItem(hit) {
  const li = document.createElement("li");
  li.className = "hit";
  li.tabIndex = 0;
  li.dataset.callId = hit.call_id;
  li.dataset.start = hit.start;
  const head = document.createElement("div");
  head.className = "hit-head";
  head.textContent = hit.call_started_at.slice(0, 16).replace("T", " ") + " · " + hit.call_id +
    " · " + hit.leg + " · " + clock(hit.start) + (hit.agent_id ? " · agent " + hit.agent_id : "");
  const text = document.createElement("div");
  text.className = "snippet";
  text.innerHTML = hit.snippet;  // escaped by the server; only <mark> is markup
  li.append(head, text);
  const open = () => openCall(hit.call_id, hit.start, hit.utterance_id);
  li.addEventListener("click", open);
  li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
  return li;
}

async function openCall(callId, start, utteranceId) {
  let call;
  try {
    call = await api("/v1/calls/" + encodeURIComponent(callId));
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  $("call-pane").hidden = false;
  $("call-title").textContent = "Call " + call.call_id;
  $("call-meta").textContent = [call.started_at.slice(0, 19).replace("T", " ") + " UTC",
    call.direction, call.agent_id && "agent " + call.agent_id,
    call.caller && "from " + call.caller, call.callee && "to " + call.callee,
    call.held && "legal hold"].filter(Boolean).join(" · ");
  const list = $("transcript");
  list.replaceChildren();
  for (const u of call.transcript) {
    const li = document.createElement("li");
    li.className = u.leg + (u.utterance_id === utteranceId ? " current" : "");
    li.dataset.start = u.start;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = u.leg + " · " + clock(u.start);
    li.append(who, document.createTextNode(u.text));
    li.addEventListener("click", () => seek(u.start));
    list.append(li);
  }
  const current = list.querySelector(".current");
  if (current) current.scrollIntoView({ block: "nearest" });
  await loadAudio(callId);
  seek(start);
}

async function loadAudio(callId) {
  if (state.callId === callId && state.audioUrl) return;
  const player = $("player");
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.callId = callId;
  state.audioUrl = null;
  try {
    // An <audio src> cannot send the Authorization header: fetch, then play from a blob.
    const blob = await api("/v1/calls/" + encodeURIComponent(callId) + "/audio", true);
    state.audioUrl = URL.createObjectURL(blob);
    player.src = state.audioUrl;
  } catch (e) {
    setStatus("no audio: " + e.message, true);
  }
}

function seek(t) {
  const player = $("player");
  if (player.readyState >= 1) {
    player.currentTime = t;
  } else {
    state.pendingSeek = t;
  }
}

$("player").addEventListener("loadedmetadata", () => {
  if (state.pendingSeek !== null) {
    $("player").currentTime = state.pendingSeek;
    state.pendingSeek = null;
  }
});

$("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
$("api-key").addEventListener("change", () => localStorage.setItem(KEY_STORAGE, apiKey()));
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  localStorage.setItem(KEY_STORAGE, apiKey());
  state.page = 1;
  search();
});
$("prev").addEventListener("click", () => { state.page -= 1; search(); });
$("next").addEventListener("click", () => { state.page += 1; search(); });
