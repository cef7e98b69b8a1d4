// The status page: one snapshot per second from /events, drawn as totals,
// a chart (plain SVG) and a table.  No library, nothing from elsewhere.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 960;
const HEIGHT = 220;
const PAD = { left: 44, right: 56, top: 14, bottom: 24 };

const $ = (id) => document.getElementById(id);

function ms(seconds) {
  return seconds === null ? "–" : `${(seconds * 1000).toFixed(1)} ms`;
}

// A peer that pings on its own schedule is never silent long enough for
// the server to ping it: the server has no round trip to show, and says why.
const PEER_PINGS = "the peer pings the server before the server needs to ping it, " +
  "so the server measures no round trip";

function rtt(connection, seconds) {
  return seconds === null && connection.peer_pings ? "peer pings" : ms(seconds);
}

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// Open connections on the left axis, mean RTT (ms) on the right, both
// from zero to a little above their highest point in the window.
function drawChart(history, now) {
  const chart = $("chart");
  const span = Math.max(60, now - (history[0]?.time ?? now));
  const x = (t) => PAD.left + (WIDTH - PAD.left - PAD.right) * (1 - (now - t) / span);
  const yScale = (max) => (v) => HEIGHT - PAD.bottom - (HEIGHT - PAD.top - PAD.bottom) * (v / max);
  const maxOpen = Math.ceil(Math.max(1, ...history.map((p) => p.open)) * 1.1);
  const rtts = history.filter((p) => p.rtt !== null);
  const maxRtt = Math.max(0.001, ...rtts.map((p) => p.rtt)) * 1000 * 1.1;
  const yOpen = yScale(maxOpen);
  const yRtt = yScale(maxRtt);
  const line = (points) => points.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ");
  const parts = [];
  for (const f of [0, 0.5, 1]) {
    const y = yOpen(maxOpen * f);
    parts.push(svg("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y }));
    parts.push(svg("text", { x: 6, y: y + 4 }, String(Number((maxOpen * f).toFixed(1)))));
    parts.push(svg("text", { x: WIDTH - PAD.right + 6, y: y + 4 }, `${(maxRtt * f).toFixed(1)} ms`));
  }
  const bottom = HEIGHT - 6;
  parts.push(svg("text", { x: PAD.left, y: bottom }, `${Math.round(span / 60)} min ago`));
  parts.push(svg("text", { x: WIDTH - PAD.right - 24, y: bottom }, "now"));
  parts.push(svg("text", { class: "open-legend", x: PAD.left + 160, y: bottom }, "● open connections (left axis)"));
  parts.push(svg("text", { class: "rtt-legend", x: PAD.left + 380, y: bottom }, "● mean round trip (right axis)"));
  parts.push(svg("polyline", { class: "open", points: line(history.map((p) => [x(p.time), yOpen(p.open)])) }));
  parts.push(svg("polyline", { class: "rtt", points: line(rtts.map((p) => [x(p.time), yRtt(p.rtt * 1000)])) }));
  chart.replaceChildren(...parts);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const value of cells) {
    const td = document.createElement("td");
    td.textContent = value;
    tr.append(td);
  }
  return tr;
}

// A name a token proved (--jwt-key-file) is marked verified; one the
// client merely claimed, unverified.
const VERIFIED = "its token, which the server verified, gives this name";
const UNVERIFIED = "the client claimed this name itself: nothing proves it";

function markName(td, name, verified) {
  if (!name) return;
  const mark = document.createElement("span");
  mark.className = verified ? "verified" : "unverified";
  mark.textContent = verified ? "verified" : "unverified";
  mark.title = verified ? VERIFIED : UNVERIFIED;
  td.append(" ", mark);
}

// The cluster's nodes as Redis knows them; before the first answer (or
// while Redis cannot be reached), this machine's own.
function drawNodes(snapshot) {
  const known = snapshot.nodes.length > 0;
  const nodes = known ? snapshot.nodes : (snapshot.local_nodes ?? []).map((n) => (
    { node: n.node, connections: n.open, last_heard: null, alive: n.up }));
  $("nodes").replaceChildren(...nodes.map((n) => {
    const tr = row([
      n.node, n.alive ? "alive" : (known ? "dead" : "cut off from the cluster"),
      n.connections, n.last_heard === null ? "–" : `${n.last_heard.toFixed(1)} s ago`,
    ]);
    tr.cells[1].className = n.alive ? "alive" : "dead";
    return tr;
  }));
}

async function find(event) {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  const table = $("where");
  table.hidden = true;
  $("found").textContent = "looking…";
  try {
    const response = await fetch(`presence.json?name=${encodeURIComponent(name)}`);
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error);
    const count = answer.connections.length;
    $("found").textContent = count === 0 ? `${name} is not connected.`
      : `${name} is connected ${count === 1 ? "once" : `${count} times`}:`;
    const named = !answer.connections.some((c) => c.connection === name);
    table.tBodies[0].replaceChildren(...answer.connections.map((c) => {
      const tr = row([
        c.node, c.connection, named ? name : "", c.transport ?? "–", c.peer ?? "–",
        new Date(c.since * 1000).toLocaleTimeString(), ms(c.rtt ?? null),
      ]);
      markName(tr.cells[2], named ? name : null, c.verified);
      return tr;
    }));
    table.hidden = count === 0;
  } catch (error) {
    $("found").textContent = `cannot ask the cluster: ${error.message}`;
  }
}

$("search").addEventListener("submit", find);

function drawTable(snapshot) {
  const rows = snapshot.connections.map((c) => {
    const cells = [
      c.id, c.transport, c.peer, c.node ?? "", c.name ?? "",
      new Date(c.connected_since * 1000).toLocaleTimeString(),
      `${c.silent_for.toFixed(1)} s`, rtt(c, c.rtt), rtt(c, c.smoothed_rtt),
    ];
    const tr = row(cells);
    markName(tr.cells[4], c.name, c.verified);
    const interval = snapshot.settings.interval;
    if (interval && c.silent_for > interval) tr.cells[6].className = "quiet";
    for (const td of [tr.cells[7], tr.cells[8]]) {
      if (td.textContent === "peer pings") td.title = PEER_PINGS;
    }
    return tr;
  });
  $("connections").replaceChildren(...rows);
  const open = snapshot.totals.open;
  $("shown").textContent = rows.length < open
    ? `${rows.length} of ${open} connections shown; /status.json lists them all.` : "";
}

function draw(snapshot) {
  const { totals, settings } = snapshot;
  for (const key of ["open", "accepted", "timed_out", "refused", "reconnects"]) {
    $(key).textContent = totals[key];
  }
  $("pings").textContent = `${totals.pings_sent} / ${totals.pings_received}`;
  $("sessions").textContent = `${totals.sessions} (${totals.sessions_waiting} waiting)`;
  $("resumed").textContent = `${totals.sessions_resumed} / ${totals.sessions_lost}`;
  const pongDeadline = settings.pong_timeout
    ? ` (or a ping unanswered ${settings.pong_timeout} s or more, by its round trip)` : "";
  $("settings").textContent = `ping after ${settings.interval ?? "never"} s of silence, ` +
    `drop after ${settings.timeout ?? "never"} s${pongDeadline}, ` +
    `at most ${settings.max_connections ?? "∞"} connections`;
  drawChart(snapshot.history, snapshot.time);
  drawNodes(snapshot);
  drawTable(snapshot);
}

const events = new EventSource("events");
events.addEventListener("snapshot", (event) => {
  $("live").textContent = "live";
  $("live").className = "";
  draw(JSON.parse(event.data));
});
events.addEventListener("error", () => {
  $("live").textContent = "not connected to the server; retrying";
  $("live").className = "down";
});
