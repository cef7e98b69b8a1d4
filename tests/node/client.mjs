// heartbeat.js in Node, for tests/test_node.py: one HeartbeatSocket,
// unchanged, driven by lines on stdin ("send TEXT", "close") and reporting
// each of its events as a line of JSON on stdout.  Once the socket is
// closed and stdin ends, the process must end by itself: nothing of the
// socket may keep it running.
//
//   node client.mjs URL OPTIONS_JSON [ws]
//
// With "ws", the socket is given the ws package's WebSocket (Node 20 has
// no global one); without, it uses the runtime's own.

import { createInterface } from "node:readline";

import { HeartbeatSocket } from "../../heartbeat/web/heartbeat.js";

const [url, options, kind] = process.argv.slice(2);
const settings = JSON.parse(options);
if (kind === "ws") settings.WebSocket = (await import("ws")).WebSocket;

const started = performance.now();
const report = (event, fields = {}) => {
  const t = (performance.now() - started) / 1000;
  process.stdout.write(JSON.stringify({ t, event, ...fields }) + "\n");
};

const socket = new HeartbeatSocket(url, settings);
socket.addEventListener("statechange", () => report("statechange", { state: socket.state }));
socket.addEventListener("open", () => report("open", { hello: socket.serverHello }));
socket.addEventListener("close", (event) => report("close", {
  code: event.code, reason: event.reason, wasClean: event.wasClean,
}));
socket.addEventListener("message", (event) => report("message", {
  data: event.data, rtt: socket.rtt,
}));
socket.addEventListener("error", (event) => report("error", { detail: String(event.detail?.error) }));

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  const [command, ...rest] = line.split(" ");
  if (command === "send") socket.send(rest.join(" "));
  if (command === "close") {
    socket.close();
    report("closed");
  }
});
report("started", { node: process.version });
