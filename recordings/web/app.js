// The analyst page: the tenant's calls (newest first) or a search's hits, and a call view
// whose player streams the recording, seeks to a hit, and follows the line being played.
// Plain browser JavaScript, no build step. The API key stays in localStorage and goes
// out only as an Authorization header; the player and the download buttons use the
// call's signed links (an <audio src> or <a href> cannot send a header).
"use strict";

const KEY_STORAGE = "callpipe.apiKey";
const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);
const state = { page: 1, total: 0, mode: "calls", callId: null, pendingSeek: null, terms: [] };

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

function when(iso) { return iso.slice(0, 16).replace("T", " "); }

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function filterParams() {
  const p = new URLSearchParams();
  const opt = { from: "f-from", to: "f-to", agent: "f-agent", direction: "f-direction",
                tag: "f-tag", stat: "f-stat" };
  if (state.mode === "search") Object.assign(opt, { leg: "f-leg", sort: "f-sort" });
  for (const [name, id] of Object.entries(opt)) {
    const v = $(id).value.trim();
    if (v) p.set(name, v);
  }
  return p;
}

function searchParams() {
  const p = filterParams();
  p.set("q", $("q").value);
  return p;
}

// The words of a query, to mark in a call's transcript: operators and quotes dropped,
// a trailing * kept as "any ending". Matching ignores case and accents, as the index does.
function queryTerms(q) {
  return (q.match(/[^\s"()]+/g) || [])
    .filter((w) => !["AND", "OR", "NOT"].includes(w))
    .map((w) => fold(w.replace(/^[-+]/, "")))
    .filter((w) => w.replace("*", "").length > 0);
}

function fold(s) { return s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase(); }

function marked(text, terms) {
  // text nodes and <mark>s, never innerHTML: the transcript is the caller's words
  const out = [];
  const re = /[\p{L}\p{N}]+/gu;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    const word = fold(m[0]);
    const hit = terms.some((t) => t.endsWith("*") ? word.startsWith(t.slice(0, -1)) : word === t);
    if (!hit) continue;
    out.push(document.createTextNode(text.slice(last, m.index)), el("mark", "", m[0]));
    last = m.index + m[0].length;
  }
  out.push(document.createTextNode(text.slice(last)));
  return out;
}

function showPager(total) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  $("pager").hidden = pages <= 1;
  $("page-info").textContent = "page " + state.page + " of " + pages;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = state.page >= pages;
}

async function refresh() {
  $("results").replaceChildren();
  $("calls").hidden = state.mode !== "calls";
  $("results").hidden = state.mode !== "search";
  $("export-csv").hidden = state.mode !== "search";
  return state.mode === "search" ? search() : listCalls();
}

// One page of a list route, or null (the reason shown) when the API refused.
async function fetchPage(route, params, doing) {
  setStatus(doing);
  params.set("page", state.page);
  params.set("page_size", PAGE_SIZE);
  try {
    return await api(route + "?" + params);
  } catch (e) {
    setStatus(e.message, true);
    $("pager").hidden = true;
    return null;
  }
}

function opensOnClickOrEnter(node, open) {
  node.tabIndex = 0;
  node.addEventListener("click", open);
  node.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
}

async function listCalls() {
  const data = await fetchPage("/v1/calls", filterParams(), "Loading calls…");
  if (!data) return;
  const rows = $("calls").querySelector("tbody");
  rows.replaceChildren();
  for (const c of data.calls) {
    const tr = el("tr", "call-row");
    tr.dataset.callId = c.call_id;
    const dur = c.duration === null ? "" : clock(c.duration);
    for (const v of [when(c.started_at), c.caller || "", c.callee || "", c.agent_id || "",
                     c.direction || "", dur, c.utterances]) tr.append(el("td", "", String(v)));
    const tags = el("td", "tags");
    for (const t of c.tags) tags.append(el("span", "tag", t));
    tr.append(tags);
    opensOnClickOrEnter(tr, () => { state.terms = []; openCall(c.call_id, 0, null); });
    rows.append(tr);
  }
  setStatus(data.total + (data.total === 1 ? " call" : " calls"));
  showPager(data.total);
}

async function search() {
  const data = await fetchPage("/v1/search", searchParams(), "Searching…");
  if (!data) return;
  state.total = data.total;
  // past the index's count cap the total is a floor ("1000+ matches")
  const shown = data.total + (data.total_exact ? "" : "+");
  setStatus(shown + (data.total === 1 && data.total_exact ? " match" : " matches"));
  for (const hit of data.hits) $("results").append(hitItem(hit));
  showPager(data.total);
}

function hitItem(hit) {
  const li = el("li", "hit");
  li.dataset.callId = hit.call_id;
  li.dataset.start = hit.start;
  const head = el("div", "hit-head", when(hit.call_started_at) + " · " + hit.leg + " · " +
    clock(hit.start) + (hit.agent_id ? " · agent " + hit.agent_id : "") + " · " + hit.call_id);
  const text = el("div", "snippet");
  text.innerHTML = hit.snippet;  // escaped by the server; only <mark> is markup
  li.append(head, text);
  opensOnClickOrEnter(li, () => openCall(hit.call_id, hit.start, hit.utterance_id));
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
  $("call-title").textContent = "Call " + [call.caller && "from " + call.caller,
    call.agent_id && "with agent " + call.agent_id].filter(Boolean).join(" ") ||
    "Call " + call.call_id;
  $("call-meta").textContent = [when(call.started_at) + " UTC",
    call.duration !== null && clock(call.duration), call.direction,
    call.callee && "to " + call.callee, call.held && "legal hold", call.call_id]
    .filter(Boolean).join(" · ");
  showAnalysis(call);
  const list = $("transcript");
  list.replaceChildren();
  for (const u of call.transcript) {
    const li = el("li", u.leg + (u.utterance_id === utteranceId ? " current" : ""));
    li.dataset.start = u.start;
    li.dataset.end = u.end;
    li.append(el("span", "who", u.leg + " · " + clock(u.start)), ...marked(u.text, state.terms));
    li.addEventListener("click", () => seek(u.start));
    list.append(li);
  }
  const t = call.links.transcript;
  const sep = t.includes("?") ? "&" : "?";
  for (const fmt of ["srt", "vtt", "json", "txt"]) {
    $("dl-" + fmt).href = t + sep + "format=" + fmt + "&download=true";
  }
  $("dl-audio").href = call.links.audio;
  const current = list.querySelector(".current");
  if (current) current.scrollIntoView({ block: "nearest" });
  if (state.callId !== callId) {
    // streamed: the browser asks for byte ranges as it plays and seeks
    state.callId = callId;
    $("player").src = call.links.audio;
  }
  seek(start);
}

const SECONDS = (s) => (s >= 60 ? clock(s) : s.toFixed(1) + " s");

// The call's categories and statistics beside its transcript: who talked how much (a bar
// split by leg), silence, talking over, interruptions, pace.
function showAnalysis(call) {
  const tags = $("call-tags");
  tags.replaceChildren(...call.tags.map((t) => el("span", "tag", t)));
  const s = call.statistics;
  $("call-stats").hidden = !s;
  if (!s) return;
  const bar = $("talk-bar");
  bar.replaceChildren();
  const legs = Object.entries(s.legs);
  for (const [leg, f] of legs) {
    const part = el("span", "leg-" + leg, leg + " " + Math.round(f.talk_ratio * 100) + "%");
    part.style.flexGrow = String(Math.max(f.talk_ratio, 0.02));
    bar.append(part);
  }
  const rows = [
    ["Talk", SECONDS(s.talk_s) + " of " + SECONDS(s.duration_s)],
    ["Silence", SECONDS(s.non_talk_s) + ", longest " + SECONDS(s.longest_silence_s)],
    ["Talking over", s.talk_over_count + " times, " + SECONDS(s.talk_over_s)],
  ];
  for (const [leg, f] of legs) {
    rows.push([leg, SECONDS(f.talk_s) + " · " + Math.round(f.words_per_minute) + " words/min · " +
      "cut in " + f.interruptions + "× · longest monologue " + SECONDS(f.longest_monologue_s)]);
  }
  const dl = $("stats-list");
  dl.replaceChildren();
  for (const [k, v] of rows) dl.append(el("dt", "", k), el("dd", "", v));
}

function seek(t) {
  const player = $("player");
  if (player.readyState >= 1) {
    player.currentTime = t;
  } else {
    state.pendingSeek = t;
  }
}

// The line being played: the last one started by the player's position.
function follow() {
  const t = $("player").currentTime;
  let playing = null;
  for (const li of $("transcript").children) {
    if (Number(li.dataset.start) <= t + 0.05) playing = li;
  }
  for (const li of $("transcript").querySelectorAll(".playing")) {
    if (li !== playing) li.classList.remove("playing");
  }
  if (playing && !playing.classList.contains("playing")) {
    playing.classList.add("playing");
    playing.scrollIntoView({ block: "nearest" });
  }
}

async function exportCsv() {
  // a search export needs the key: fetched, then saved from a blob
  try {
    const blob = await api("/v1/search?" + searchParams() + "&format=csv", true);
    const a = el("a");
    a.href = URL.createObjectURL(blob);
    a.download = "search.csv";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    setStatus("export failed: " + e.message, true);
  }
}

$("player").addEventListener("loadedmetadata", () => {
  if (state.pendingSeek !== null) {
    $("player").currentTime = state.pendingSeek;
    state.pendingSeek = null;
  }
});
$("player").addEventListener("timeupdate", follow);
$("player").addEventListener("seeked", follow);

$("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem(KEY_STORAGE, apiKey());
  state.page = 1;
  refresh();
});
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  localStorage.setItem(KEY_STORAGE, apiKey());
  state.page = 1;
  state.mode = $("q").value.trim() ? "search" : "calls";
  state.terms = queryTerms($("q").value);
  refresh();
});
$("prev").addEventListener("click", () => { state.page -= 1; refresh(); });
$("next").addEventListener("click", () => { state.page += 1; refresh(); });
$("export-csv").addEventListener("click", exportCsv);

// --- the dashboard ---------------------------------------------------------------------
// Bar charts drawn as SVG here: four bar charts do not need a charting library, and the
// page has no build step to bring one in.
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#3b6fe0", "#e0a100", "#2e9d5b", "#b0406b", "#6b5bd2", "#1f9bb5"];

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Grouped bars: one group per label, one bar per series; values next to the bars.
function barChart(node, labels, series, format) {
  node.replaceChildren();
  if (!labels.length) { node.append(el("p", "empty", "no calls")); return; }
  const max = Math.max(...series.flatMap((s) => s.values.map((v) => v || 0)), 1e-9);
  const group = 26 * series.length + 12, width = 480, left = 110, height = labels.length * group + 10;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  labels.forEach((label, i) => {
    const y = i * group + 6;
    chart.append(svg("text", { x: left - 6, y: y + group / 2, "text-anchor": "end", class: "label" }, label));
    series.forEach((s, k) => {
      const v = s.values[i] || 0, w = (width - left - 60) * v / max;
      const bar = svg("rect", { x: left, y: y + k * 26, width: Math.max(w, 1), height: 20,
                                fill: COLOURS[k % COLOURS.length], class: "bar" });
      bar.append(svg("title", {}, `${s.name}: ${format(v)}`));
      chart.append(bar, svg("text", { x: left + w + 4, y: y + k * 26 + 15, class: "value" }, format(v)));
    });
  });
  node.append(chart);
  if (series.length > 1) {
    const key = el("p", "legend");
    series.forEach((s, k) => {
      const sw = el("span", "swatch");
      sw.style.background = COLOURS[k % COLOURS.length];
      key.append(sw, s.name + " ");
    });
    node.append(key);
  }
}

async function dashboard() {
  const p = new URLSearchParams();
  for (const [name, id] of [["from", "d-from"], ["to", "d-to"], ["interval", "d-interval"],
                            ["agent", "d-agent"]]) {
    const v = $(id).value.trim();
    if (v) p.set(name, v);
  }
  $("dash-status").textContent = "Loading…";
  let data;
  try {
    data = await api("/v1/analytics?" + p);
  } catch (e) {
    $("dash-status").textContent = e.message;
    $("dash-status").className = "error";
    return;
  }
  const calls = data.periods.reduce((n, x) => n + x.calls, 0);
  $("dash-status").className = "";
  $("dash-status").textContent = calls + (calls === 1 ? " call" : " calls") + " · per " + data.interval;
  const pct = (v) => Math.round(v * 100) + "%";
  barChart($("chart-agents"), data.agents.map((a) => a.agent_id || "(none)"),
    [{ name: "talk ratio", values: data.agents.map((a) => a.agent_talk_ratio) }], pct);
  const periods = data.periods.map((x) => x.period);
  barChart($("chart-silence"), periods,
    [{ name: "longest silence", values: data.periods.map((x) => x.longest_silence_s) }],
    (v) => v.toFixed(1) + " s");
  barChart($("chart-interruptions"), periods, [
    { name: "agent cut in", values: data.periods.map((x) => x.agent_interruptions) },
    { name: "customer cut in", values: data.periods.map((x) => x.customer_interruptions) },
  ], (v) => String(Math.round(v)));
  const tags = data.tags.map((t) => t.tag);
  barChart($("chart-tags"), periods,
    tags.map((t) => ({ name: t, values: data.periods.map((x) => x.tags[t] || 0) })),
    (v) => String(v));
}

function showView(name) {
  const dash = name === "dashboard";
  $("search-pane").hidden = dash;
  $("call-pane").hidden = dash || !state.callId;
  $("dashboard-pane").hidden = !dash;
  $("view-calls").classList.toggle("active", !dash);
  $("view-dashboard").classList.toggle("active", dash);
  if (dash) dashboard();
}

$("view-calls").addEventListener("click", () => showView("calls"));
$("view-dashboard").addEventListener("click", () => showView("dashboard"));
$("dash-form").addEventListener("submit", (ev) => { ev.preventDefault(); dashboard(); });
if (apiKey()) refresh();
