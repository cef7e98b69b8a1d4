// heartbeat.js's rules, one case each, with a fake clock and a fake
// WebSocket: no waiting, no network.  A case throws to fail.

import { BufferFullError, HeartbeatSocket, backoffDelay } from "/heartbeat.js";

class FakeClock {
  constructor() {
    this.t = 0;
    this.calls = new Map();
    this.ids = 0;
  }
  now() {
    return this.t;
  }
  setTimeout(callback, seconds) {
    this.calls.set(++this.ids, { at: this.t + seconds, callback });
    return this.ids;
  }
  clearTimeout(id) {
    this.calls.delete(id);
  }
  advance(seconds) {
    const end = this.t + seconds;
    for (let fired = 0; ; fired++) {
      // A timer that re-arms itself without delay would spin for ever.
      check(fired < 10000, `timers fired ${fired} times within ${seconds}s`);
      const due = [...this.calls].filter(([, c]) => c.at <= end + 1e-9);
      if (due.length === 0) break;
      const [id, call] = due.reduce((a, b) => (b[1].at < a[1].at ? b : a));
      this.calls.delete(id);
      this.t = Math.max(this.t, call.at);
      call.callback();
    }
    this.t = end;
  }
}

function fakeWebSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.protocol = "";
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(data);
    }
    close(code, reason) {
      this.closedWith = [code, reason];
      this.readyState = 3;
    }
    // The server's side
    open(protocol = "") {
      this.protocol = protocol;
      this.readyState = 1;
      this.onopen(new Event("open"));
    }
    receive(data) {
      this.onmessage(new MessageEvent("message", { data }));
    }
    // As Node's own WebSocket does when refused: an error, and no close.
    fail() {
      this.onerror(new Event("error"));
    }
    drop(code = 1006, reason = "") {
      this.readyState = 3;
      // Not a CloseEvent, which a case takes away.
      this.onclose(Object.assign(new Event("close"), { code, reason, wasClean: code !== 1006 }));
    }
  }
  return { FakeWebSocket, sockets };
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, `${what}: ${a} !== ${e}`);
}

const hello = (interval, timeout, maxLength, pongTimeout) =>
  JSON.stringify({ type: "hello", interval, timeout, maxLength, pongTimeout });

// Every socket a case made, closed after it so none hears the next case's
// online or visibilitychange events.
export const made = [];

// A socket on fakes, its events recorded; random() is 1 unless given.
function make(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSockets();
  const socket = new HeartbeatSocket("ws://127.0.0.1:9/", {
    WebSocket: FakeWebSocket, clock, random: () => 1, ...options,
  });
  made.push(socket);
  const events = [];
  for (const type of ["open", "close", "message", "statechange", "error"]) {
    socket.addEventListener(type, (event) => events.push(
      type === "statechange" ? event.detail.state
        : type === "close" ? `close ${event.code}`
        : type === "message" ? `message ${event.data}`
        : type === "error" ? `error ${event.detail.data}` : type));
  }
  const connect = () => {
    const ws = sockets.at(-1);
    ws.open();
    ws.receive(hello(1, 3));
    return ws;
  };
  return { socket, clock, sockets, events, connect };
}

export const cases = {};

// The socket stays open for `seconds` less a hundredth, and is dropped for
// `reason` within the next two hundredths.
function droppedAfter({ socket, clock, events }, ws, seconds, reason) {
  clock.advance(seconds - 0.01);
  same(socket.state, "open", `state just before the ${reason}`);
  clock.advance(0.02);
  same(socket.state, "reconnecting", `state after the ${reason}`);
  same(ws.closedWith, [4000, reason], "close");
  same(events.slice(-2), ["close 4000", "reconnecting"], "events");
}

// Open only once the server has answered; messages sent before go out
// first, in order.
cases.opens_when_the_server_speaks_and_flushes_in_order = () => {
  const { socket, sockets, events } = make();
  socket.send("a");
  const ws = sockets[0];
  ws.open();
  socket.send("b");
  same(socket.state, "connecting", "state before any answer");
  same(ws.sent, ['{"type":"ping","t":1}'], "sent before any answer");
  ws.receive(hello(1, 3));
  socket.send("c");
  same(ws.sent.slice(1), ["a", "b", "c"], "flushed in order");
  same(events, ["open", "open"], "events");
};

// The round trip of the page's own ping is measured.
cases.measures_the_round_trip = () => {
  const { socket, clock, sockets } = make();
  sockets[0].open();
  clock.advance(0.05);
  sockets[0].receive('{"type":"pong","t":1}');
  check(Math.abs(socket.rtt - 0.05) < 1e-9, `rtt ${socket.rtt}`);
};

// The server's JSON pings are answered with the same t; heartbeats never
// reach the application, other messages do.
cases.answers_pings_and_delivers_the_rest = () => {
  const { sockets, events, connect } = make();
  const ws = connect();
  ws.receive('{"type":"ping","t":7}');
  ws.receive('{"type":"chat","text":"hi"}');
  same(ws.sent.at(-1), '{"type":"pong","t":7}', "answer");
  same(events.slice(2), ['message {"type":"chat","text":"hi"}'], "delivered");
};

// Silent for the interval: a ping; silent for the timeout: dropped and
// replaced, not before.
cases.pings_a_silent_server_and_drops_a_dead_one = () => {
  const page = make();
  const { clock, sockets, connect } = page;
  const ws = connect();
  clock.advance(0.99);
  same(ws.sent.length, 1, "pings before the interval");
  clock.advance(0.02);
  same(ws.sent.at(-1), '{"type":"ping","t":2}', "ping after the interval");
  droppedAfter(page, ws, 1.98, "heartbeat timeout");
  clock.advance(1);
  same(sockets.length, 2, "connection attempts");
};

// Any message from the server postpones its deadline.
cases.any_message_keeps_the_server_alive = () => {
  const { socket, clock, connect } = make();
  const ws = connect();
  for (let i = 0; i < 10; i++) {
    clock.advance(0.9);
    ws.receive("news");
  }
  same(socket.state, "open", "state");
  same(ws.sent.length, 1, "pings sent");
};

// A deadline that fires late (a frozen page) first lets the messages that
// arrived meanwhile be read; a server that really was silent is dropped.
cases.a_late_deadline_reads_what_arrived_first = () => {
  const { socket, clock, connect } = make();
  const ws = connect();
  clock.t += 10;  // frozen: no timer ran
  clock.advance(0);
  same(socket.state, "open", "state right after the freeze");
  ws.receive('{"type":"ping","t":3}');
  clock.advance(0.1);
  same(socket.state, "open", "state once the waiting message is read");
  clock.t += 10;
  clock.advance(0.1);
  same(socket.state, "reconnecting", "state when nothing was waiting");
};

// Failed attempts double the wait up to maxDelay; a healthy connection
// starts the count over.
cases.backoff_grows_to_the_cap_and_resets_once_healthy = () => {
  const { clock, sockets, connect } = make({ maxDelay: 10 });
  const waits = [];
  for (let i = 0; i < 6; i++) {
    const before = sockets.length;
    const start = clock.now();
    sockets.at(-1).drop();
    while (sockets.length === before) clock.advance(0.25);
    waits.push(clock.now() - start);
  }
  same(waits, [1, 2, 4, 8, 10, 10], "waits");
  connect();
  const start = clock.now();
  sockets.at(-1).drop();
  while (sockets.length === 7) clock.advance(0.25);
  same(clock.now() - start, 1, "wait after a healthy connection");
};

// Full jitter: a delay anywhere in [0, cap], never above maxDelay.
cases.full_jitter_stays_between_zero_and_the_cap = () => {
  same(backoffDelay(3, 1, 30, () => 0), 0, "random 0");
  same(backoffDelay(3, 1, 30, () => 0.5), 4, "random 0.5");
  same(backoffDelay(5000, 1, 30, () => 0.99), 29.7, "huge attempt");
};

// A full server (close 4013) is given half to all of maxDelay.
cases.a_full_server_is_not_hammered = () => {
  const { clock, sockets } = make({ random: () => 0 });
  sockets[0].open();
  sockets[0].drop(4013, "server full");
  clock.advance(14.9);
  same(sockets.length, 1, "attempts before half the cap");
  clock.advance(0.2);
  same(sockets.length, 2, "attempts after half the cap");
};

// A message sent while the server is closing the socket waits for the
// next connection instead of being dropped.
cases.sending_during_a_close_waits_for_the_next_connection = () => {
  const { socket, clock, sockets, connect } = make();
  const ws = connect();
  ws.readyState = 2;  // the server's close frame has arrived
  socket.send("late");
  ws.drop(4000, "heartbeat timeout");
  clock.advance(1);
  same(connect().sent.slice(1), ["late"], "sent on the next connection");
  same(ws.sent.length, 1, "sent on the closing one");
};

// The auth token goes first on every connection; a refusal is final.
cases.authenticates_first_and_stops_when_refused = () => {
  const { socket, clock, sockets } = make({ authToken: "s3cret" });
  sockets[0].open();
  same(sockets[0].sent, ["auth s3cret", '{"type":"ping","t":1}'], "sent on open");
  sockets[0].drop(4001, "unauthorized");
  same(socket.state, "closed", "state");
  clock.advance(100);
  same(sockets.length, 1, "attempts");
};

// The send buffer is bounded and says so; nothing it accepted is lost.
cases.the_buffer_is_bounded_and_loud = () => {
  const { socket, connect } = make({ maxBuffered: 2 });
  socket.send("a");
  socket.send("b");
  let refused = null;
  try {
    socket.send("c");
  } catch (error) {
    refused = error;
  }
  check(refused instanceof BufferFullError, `third send: ${refused}`);
  same(connect().sent.slice(1), ["a", "b"], "sent");
};

// Back online, or visible again: reconnect at once, not after the backoff.
cases.online_or_visible_reconnects_at_once = () => {
  const { sockets } = make();
  sockets[0].drop();
  window.dispatchEvent(new Event("online"));
  same(sockets.length, 2, "attempts after online");
  sockets[1].drop();
  Object.defineProperty(document, "visibilityState", { value: "visible", configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
  same(sockets.length, 3, "attempts after visibilitychange");
};

// An attempt that never opens is given up after the timeout, when that
// is shorter than the connect timeout.
cases.a_hanging_attempt_times_out = () => {
  const { socket, clock, sockets } = make({ timeout: 2 });
  clock.advance(1.99);
  same(socket.state, "connecting", "state before the timeout");
  clock.advance(0.02);
  same(sockets[0].closedWith, [4000, "connect timeout"], "close");
  same(socket.state, "reconnecting", "state");
};

// An attempt has the connect timeout (10 s by default), not the 55 s of
// the heartbeat, to hear from the server, whether or not it opened.
cases.connecting_has_its_own_timeout = () => {
  for (const opens of [false, true]) {
    const { socket, clock, sockets, events } = make();
    if (opens) sockets[0].open();
    clock.advance(9.99);
    same(socket.state, "connecting", "state before the connect timeout");
    clock.advance(0.02);
    same(sockets[0].closedWith, [4000, "connect timeout"], "close");
    same(events.slice(-2), ["close 4000", "reconnecting"], "events");
  }
  const { socket, clock, sockets } = make({ connectTimeout: 0.5 });
  clock.advance(0.49);
  same(socket.state, "connecting", "state before a connect timeout chosen");
  clock.advance(0.02);
  same(socket.state, "reconnecting", "state after it");
  same(sockets.length, 1, "attempts");
};

// Once the server has spoken, the connect timeout is over.
cases.the_connect_timeout_ends_when_the_server_speaks = () => {
  const { socket, clock, sockets } = make({ connectTimeout: 0.5 });
  clock.advance(0.4);
  const ws = sockets[0];
  ws.open();
  ws.receive(hello(1, 3));
  clock.advance(2.5);
  same(socket.state, "open", "state past the connect timeout");
  same(ws.sent.length, 3, "pings sent");
  clock.advance(0.6);
  same(socket.state, "reconnecting", "state past the heartbeat timeout");
};

// An error ends the attempt at once (Node's WebSocket fires no close when
// refused); whatever the socket does after that is not heard.
cases.an_error_ends_the_attempt_at_once = () => {
  const { socket, clock, sockets, events } = make();
  const ws = sockets[0];
  ws.fail();
  same(events, ["close 1006", "reconnecting"], "events");
  same(ws.closedWith, [undefined, undefined], "the failed socket is closed");
  ws.fail();
  ws.drop();
  same(events.length, 2, "events after the socket was left");
  clock.advance(1);
  same(sockets.length, 2, "attempts");
  same(socket.state, "connecting", "state");
};

// Without a CloseEvent class (Node before 23), close events still carry
// their code, reason and wasClean.
cases.close_events_do_without_close_event = () => {
  const saved = globalThis.CloseEvent;
  delete globalThis.CloseEvent;
  try {
    const { socket, connect } = make();
    const closes = [];
    socket.addEventListener("close", (event) => closes.push([event.code, event.reason, event.wasClean]));
    connect().drop(4321, "gone");
    same(closes, [[4321, "gone", true]], "close events");
  } finally {
    globalThis.CloseEvent = saved;
  }
};

// The server's hello sets the timing, unless the page chose its own.
cases.the_server_sets_the_timing_unless_the_page_did = () => {
  const { socket, connect } = make({ timeout: 9 });
  connect();
  same([socket.interval, socket.timeout], [1, 9], "timing");
};

// close() ends it all: no timer, no reconnection, no more sending.
cases.close_is_final = () => {
  const { socket, clock, sockets, events, connect } = make();
  const ws = connect();
  socket.close();
  same(ws.closedWith, [1000, ""], "close");
  ws.drop(1000);
  clock.advance(100);
  same(sockets.length, 1, "attempts");
  same(clock.calls.size, 0, "timers left");
  same(events.slice(-2), ["closed", "close 1000"], "events");
  let refused = false;
  try {
    socket.send("late");
  } catch {
    refused = true;
  }
  check(refused, "send after close");
  window.dispatchEvent(new Event("online"));
  same(sockets.length, 1, "attempts after online");
};

// Only a connection's first message may set its timing: a later hello (a
// peer's message relayed as text by some server) changes nothing.
cases.a_later_hello_is_not_taken = () => {
  const { socket, clock, events, connect } = make();
  const ws = connect();
  ws.receive(hello(0.01, 0.02));
  same([socket.interval, socket.timeout], [1, 3], "timing");
  same(events.slice(2), [], "events");
  clock.advance(0.5);
  same(socket.state, "open", "state");
};

// A hello with timing that is not a number, below 0.1 s, or a timeout not
// above the interval leaves the page's defaults, without a timer loop.
cases.a_hello_with_bad_timing_keeps_the_defaults = () => {
  for (const [interval, timeout] of [["x", "y"], [0.01, 0.02], [3, 1], [Infinity, NaN]]) {
    const { socket, clock, sockets } = make();
    sockets[0].open();
    sockets[0].receive(hello(interval, timeout));
    same([socket.interval, socket.timeout], [25, 90], `timing from ${interval}, ${timeout}`);
    clock.advance(1);
    same(socket.state, "open", "state");
  }
};

// A server that never pings (--interval 0) or never drops (--timeout 0)
// says null: the page still pings it in time, and still drops it dead.
cases.a_server_without_interval_or_timeout_is_still_watched = () => {
  const passive = make();
  passive.sockets[0].open();
  passive.sockets[0].receive(hello(null, 10));
  same([passive.socket.interval, passive.socket.timeout], [5, 10], "timing without interval");
  passive.clock.advance(5.01);
  same(passive.sockets[0].sent.at(-1), '{"type":"ping","t":2}', "the page pings");
  const patient = make();
  patient.sockets[0].open();
  patient.sockets[0].receive(hello(25, null));
  same([patient.socket.interval, patient.socket.timeout], [25, 90], "timing without timeout");
  patient.clock.advance(90.01);
  same(patient.socket.state, "reconnecting", "a dead server dropped");
};

// A server ping whose t is not a whole number is not answered.
cases.only_well_formed_pings_are_answered = () => {
  const { connect } = make();
  const ws = connect();
  ws.receive('{"type":"ping","t":"x"}');
  ws.receive('{"type":"ping"}');
  same(ws.sent.length, 1, "answers to bad pings");
  ws.receive('{"type":"ping","t":7}');
  same(ws.sent.at(-1), '{"type":"pong","t":7}', "answer");
};

// What the server would refuse (closing the socket, losing what follows)
// throws at once: a newline, or more bytes than the limit of its hello.
cases.send_throws_for_what_the_server_would_refuse = () => {
  const { socket, sockets } = make();
  const ws = sockets[0];
  ws.open();
  ws.receive(hello(1, 3, 10));
  const refused = (data) => {
    try {
      socket.send(data);
    } catch (error) {
      return error instanceof RangeError;
    }
    return false;
  };
  check(refused("two\nlines"), "newline");
  check(refused("x".repeat(11)), "11 bytes");
  check(refused("\u00e9".repeat(6)), "12 bytes in 6 characters");
  check(refused(new Uint8Array(11)), "11 binary bytes");
  socket.send("\u00e9".repeat(5));
  socket.send(new Uint8Array(10));
  same(ws.sent.length, 3, "sent");
};

// A message kept while disconnected that the hello shows over the limit
// is not sent (an error event says so); the rest go.
cases.a_kept_message_over_the_limit_is_reported_not_sent = () => {
  const { socket, sockets, events } = make();
  socket.send("x".repeat(20));
  socket.send("ok");
  sockets[0].open();
  sockets[0].receive(hello(1, 3, 10));
  same(sockets[0].sent.slice(1), ["ok"], "sent");
  same(events.filter((e) => e.startsWith("error")), ["error " + "x".repeat(20)], "events");
};

// A message the server would take for a heartbeat goes as its bytes, so
// it reaches the other side whole.
cases.a_message_shaped_like_a_heartbeat_goes_as_bytes = () => {
  const { socket, connect } = make();
  const ws = connect();
  socket.send('{"type":"ping","t":1}');
  const sent = ws.sent.at(-1);
  check(sent instanceof Uint8Array, `sent ${sent}`);
  same(new TextDecoder().decode(sent), '{"type":"ping","t":1}', "bytes");
};

// A message the server would take for a fresh token goes as its bytes
// too; the page's own tokens go as text.
cases.a_message_shaped_like_a_token_goes_as_bytes = () => {
  const { socket, sockets } = make({ authToken: "s3cret" });
  const ws = sockets[0];
  ws.open();
  ws.receive(hello(1, 3));
  socket.send("auth not-a-token");
  same(ws.sent[0], "auth s3cret", "the token, as text");
  const sent = ws.sent.at(-1);
  check(sent instanceof Uint8Array, `sent ${sent}`);
  same(new TextDecoder().decode(sent), "auth not-a-token", "bytes");
};

// Back online, or visible again, during an attempt: that attempt is
// dropped and a new one starts at once.
cases.online_or_visible_while_connecting_starts_afresh = () => {
  const { socket, sockets } = make();
  window.dispatchEvent(new Event("online"));
  same(sockets.length, 2, "attempts after online");
  check(sockets[0].closedWith !== undefined, "the pending attempt closed");
  Object.defineProperty(document, "visibilityState", { value: "visible", configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
  same(sockets.length, 3, "attempts after visibilitychange");
  same(socket.state, "connecting", "state");
  sockets[2].open();
  sockets[2].receive(hello(1, 3));
  same(socket.state, "open", "state once answered");
};

// The page offers heartbeat.v1 (before the application's own
// subprotocols); a server that takes it gets the page's hello, with its
// name, before the first ping, and its answer is kept and followed.
cases.negotiates_through_its_hello = () => {
  const { socket, sockets } = make({ name: "alice", protocols: ["chat"] });
  const ws = sockets[0];
  same(ws.protocols, ["heartbeat.v1", "chat"], "subprotocols offered");
  ws.open("heartbeat.v1");
  same(ws.sent, ['{"type":"hello","name":"alice","resume":true}', '{"type":"ping","t":1}'], "sent");
  const answer = { type: "hello", id: 3, interval: 2, timeout: 5, maxLength: 10, name: "alice" };
  ws.receive(JSON.stringify(answer));
  same(socket.serverHello, answer, "the server's answer");
  same([socket.interval, socket.timeout, socket.maxLength], [2, 5, 10], "timing taken");
};

// A server that does not take the subprotocol gets no hello from the page.
cases.sends_no_hello_to_a_server_that_does_not_negotiate = () => {
  const { socket, sockets } = make({ name: "alice" });
  const ws = sockets[0];
  ws.open();
  same(ws.sent, ['{"type":"ping","t":1}'], "sent");
  ws.receive(hello(1, 3));
  same(socket.serverHello, null, "no answer kept");
};

// A server that answered the page's ping and then leaves one unanswered
// is dropped at the pong deadline (its hello's pongTimeout here), well
// before the timeout, and not a moment before.
cases.drops_a_server_that_leaves_its_ping_unanswered = () => {
  const page = make();
  const { socket, clock, sockets } = page;
  const ws = sockets[0];
  ws.open();
  ws.receive(hello(1, 10, 65536, 0.5));
  clock.advance(0.01);
  ws.receive('{"type":"pong","t":1}');
  same(socket.pongDeadline, 0.5, "pong deadline");
  clock.advance(1.0);
  same(ws.sent.at(-1), '{"type":"ping","t":2}', "second ping");
  droppedAfter(page, ws, 0.5, "pong timeout");
};

// Any message before the deadline counts as an answer; a server that never
// answered a ping keeps the timeout rule alone.
cases.a_message_or_no_answer_ever_keeps_the_timeout_rule = () => {
  const talking = make();
  const ws = talking.sockets[0];
  ws.open();
  ws.receive(hello(1, 10, 65536, 0.5));
  ws.receive('{"type":"pong","t":1}');
  talking.clock.advance(1.2);
  ws.receive("news");
  talking.clock.advance(0.5);
  same(talking.socket.state, "open", "a talking server");
  const mute = make();
  mute.sockets[0].open();
  mute.sockets[0].receive(hello(1, 10, 65536, 0.5));
  mute.clock.advance(9.99);
  same(mute.socket.pongDeadline, null, "no deadline before an answer");
  same(mute.socket.state, "open", "state before the timeout");
  mute.clock.advance(0.02);
  same(mute.sockets[0].closedWith, [4000, "heartbeat timeout"], "close");
};

// Round trips longer than the interval: the pong of the ping before the
// latest is measured, and from then on one ping is outstanding at a time.
cases.keeps_one_ping_outstanding_on_a_slow_link = () => {
  const { socket, clock, sockets } = make();
  const ws = sockets[0];
  ws.open();
  ws.receive(hello(1, 30, 65536, 5));
  const pings = () => ws.sent.filter((m) => m.startsWith('{"type":"ping"')).length;
  clock.advance(1.01);
  same(pings(), 2, "pings before any answer");
  clock.advance(0.19);
  ws.receive('{"type":"pong","t":1}');
  check(Math.abs(socket.rtt - 1.2) < 1e-9, `rtt ${socket.rtt}`);
  clock.advance(2);
  same(pings(), 2, "no ping while ping 2 awaits its pong");
  ws.receive('{"type":"pong","t":2}');
  clock.advance(1.01);
  same(pings(), 3, "the next ping an interval after the pong");
  same(socket.state, "open", "state");
};

// The page's own pongTimeout is kept over the server's; a pongTimeout of 0
// from the server turns the rule off.
cases.the_pong_timeout_is_the_servers_unless_the_page_chose = () => {
  const own = make({ pongTimeout: 2 });
  own.sockets[0].open();
  own.sockets[0].receive(hello(1, 3, 10, 0.5));
  same(own.socket.pongTimeout, 2, "the page's own");
  const off = make();
  off.sockets[0].open();
  off.sockets[0].receive(hello(1, 3, 10, 0));
  off.sockets[0].receive('{"type":"pong","t":1}');
  same([off.socket.pongTimeout, off.socket.pongDeadline], [0, null], "turned off");
  const odd = make();
  odd.sockets[0].open();
  odd.sockets[0].receive(hello(1, 3, 10, "soon"));
  same(odd.socket.pongTimeout, 5, "a bad value");
};

// A pong deadline that fires late (a frozen page) first reads what arrived.
cases.a_late_pong_deadline_reads_what_arrived_first = () => {
  const { socket, clock, sockets } = make();
  const ws = sockets[0];
  ws.open();
  ws.receive(hello(1, 30, 65536, 0.5));
  ws.receive('{"type":"pong","t":1}');
  clock.advance(1.01);
  clock.t += 5;  // frozen past the deadline
  clock.advance(0);
  same(socket.state, "open", "state right after the freeze");
  ws.receive('{"type":"pong","t":2}');
  clock.advance(0.1);
  same(socket.state, "open", "state once the waiting pong is read");
};

// A function for authToken is asked for a token on each connection; once
// the server's hello says how long it has, a fresh one goes when three
// quarters of that are gone, on the same socket, answered by a hello with
// the fresh token's time; the page outlives three of its tokens' lives.
cases.refreshes_a_token_that_a_function_makes = () => {
  let minted = 0;
  const { socket, clock, sockets } = make({ authToken: () => `t${++minted}`, name: "ann" });
  const ws = sockets[0];
  ws.open("heartbeat.v1");
  same(ws.sent.slice(0, 2), ["auth t1", '{"type":"hello","name":"ann","resume":true}'], "sent on open");
  ws.receive(JSON.stringify({ type: "hello", interval: 10, timeout: 30, name: "ann", expires: 8 }));
  const tokens = () => ws.sent.filter((m) => m.startsWith("auth "));
  for (let period = 1; period <= 4; period++) {
    clock.advance(5.99);
    same(tokens().length, period, `tokens sent just before refresh ${period}`);
    clock.advance(0.02);
    same(tokens().at(-1), `auth t${period + 1}`, `refresh ${period}`);
    ws.receive(JSON.stringify({ type: "hello", expires: 8 }));
  }
  same(minted, 5, "tokens made");
  same([socket.state, sockets.length], ["open", 1], "one connection throughout");
};

// A token the function promises is awaited: nothing goes before it, then
// auth, the hello and the ping, in that order.
cases.waits_for_a_promised_token = async () => {
  let resolve;
  const { sockets } = make({ authToken: () => new Promise((r) => { resolve = r; }) });
  const ws = sockets[0];
  ws.open("heartbeat.v1");
  same(ws.sent, [], "sent before the token");
  resolve("later");
  await Promise.resolve();
  await Promise.resolve();
  same(ws.sent, ["auth later", '{"type":"hello","resume":true}', '{"type":"ping","t":1}'], "sent");
};

// A function that cannot make a token ends the attempt with an "error"
// event; the page tries again after its backoff and the function then.
cases.a_token_that_cannot_be_made_ends_the_attempt = () => {
  let failing = true;
  const { socket, clock, sockets, events } = make({
    authToken: () => { if (failing) throw new Error("backend down"); return "ok"; } });
  sockets[0].open();
  same(sockets[0].sent, [], "nothing sent");
  same(socket.state, "reconnecting", "state");
  check(events.includes("error undefined"), `events ${events}`);
  failing = false;
  clock.advance(1);
  sockets[1].open();
  same(sockets[1].sent[0], "auth ok", "the next attempt's token");
};

// Closed with 4003 (token expired), a page that can make tokens comes back
// with a fresh one; one with a fixed token stops, as for 4001: the same
// token could only be refused.
cases.an_expired_token_is_renewed_or_final = () => {
  let minted = 0;
  const renewing = make({ authToken: () => `t${++minted}` });
  renewing.sockets[0].open();
  renewing.sockets[0].drop(4003, "token expired");
  same(renewing.socket.state, "reconnecting", "state with a function");
  renewing.clock.advance(1);
  renewing.sockets[1].open();
  same(renewing.sockets[1].sent[0], "auth t2", "a fresh token");
  const fixed = make({ authToken: "s3cret" });
  fixed.sockets[0].open();
  fixed.sockets[0].drop(4003, "token expired");
  same(fixed.socket.state, "closed", "state with a fixed token");
  fixed.clock.advance(100);
  same(fixed.sockets.length, 1, "attempts");
};

// Sessions: a socket whose server takes heartbeat.v1 and answers its hello
// with `answer` (fields of the server's hello).
function sessionPage(options = {}) {
  const page = make(options);
  page.sessionEvents = [];
  page.socket.addEventListener("resume", (e) => page.sessionEvents.push(["resume", e.detail.replayed]));
  page.socket.addEventListener("sessionlost", (e) => page.sessionEvents.push(
    ["sessionlost", e.detail.reason, e.detail.inDoubt]));
  page.answer = (answer) => {
    const ws = page.sockets.at(-1);
    ws.open("heartbeat.v1");
    ws.receive(JSON.stringify({ type: "hello", interval: 1, timeout: 3, ...answer }));
    return ws;
  };
  page.hello = (ws) => JSON.parse(ws.sent.find((m) => m.includes('"hello"')));
  return page;
}

const sid = "Yq3vQ0eA9rJk2LmS5tUw1x";

// The page asks for a session; after a reconnection it resumes it: what
// the server had not received goes again, in order, before anything new,
// and nothing the server had received goes twice.
cases.resumes_its_session_and_sends_again_only_what_was_missed = () => {
  const page = sessionPage();
  const { socket, clock, sockets } = page;
  sockets[0].open("heartbeat.v1");
  same(page.hello(sockets[0]), { type: "hello", resume: true }, "first hello");
  sockets[0].receive(JSON.stringify({ type: "hello", interval: 1, timeout: 3, session: sid, received: 0 }));
  same(socket.sessionId, sid, "session id");
  socket.send("a");
  socket.send("b");
  sockets[0].receive("m1");
  sockets[0].receive("m2");
  sockets[0].drop(1006);
  socket.send("c");
  clock.advance(1);
  const ws = page.answer({ session: sid, received: 1 });
  same(page.hello(ws), { type: "hello", resume: sid, received: 2 }, "second hello");
  same(ws.sent.filter((m) => !m.startsWith("{")), ["b", "c"], "sent again");
  socket.send("d");
  same(ws.sent.at(-1), "d", "then the new");
  same(page.sessionEvents, [["resume", 2]], "events");
};

// The count goes at once after 64 messages, 0.2 s after the first one
// otherwise, and on the page's pings and pongs; the server's counts free
// what the page kept.
cases.tells_its_count_and_drops_what_the_server_counted = () => {
  const page = sessionPage();
  const { socket, clock } = page;
  const ws = page.answer({ session: sid, received: 0 });
  const acks = () => ws.sent.filter((m) => m.includes('"ack"'));
  for (let i = 0; i < 63; i++) ws.receive(`m${i}`);
  same(acks(), [], "no ack before 64");
  ws.receive("m63");
  same(acks(), ['{"type":"ack","n":64}'], "ack at 64");
  ws.receive("m64");
  clock.advance(0.19);
  same(acks().length, 1, "not before 0.2 s");
  clock.advance(0.02);
  same(acks().at(-1), '{"type":"ack","n":65}', "ack after 0.2 s");
  ws.receive('{"type":"ping","t":9}');
  same(ws.sent.at(-1), '{"type":"pong","t":9,"n":65}', "a pong carries it");
  socket.send("x");
  socket.send("y");
  same(socket._unacked, ["x", "y"], "kept");
  ws.receive('{"type":"ack","n":1}');
  same(socket._unacked, ["y"], "the acknowledged one dropped");
  ws.receive('{"type":"pong","t":1,"n":2}');
  same(socket._unacked, [], "a pong's count too");
};

// A session the server cannot resume is reported with its reason and the
// messages in doubt; what never left the page goes in the new session.
cases.a_lost_session_is_reported_with_what_is_in_doubt = () => {
  const page = sessionPage();
  const { socket, clock, sockets } = page;
  page.answer({ session: sid, received: 0 });
  socket.send("sent");
  sockets[0].drop(1006);
  socket.send("kept");
  clock.advance(1);
  const ws = page.answer({ session: "Zt6pB1cD0sFh3NkR8vXy2w", received: 0, lost: "expired" });
  same(page.sessionEvents, [["sessionlost", "expired", ["sent"]]], "events");
  same(socket.sessionId, "Zt6pB1cD0sFh3NkR8vXy2w", "the new session");
  same(ws.sent.filter((m) => !m.startsWith("{")), ["kept"], "sent in the new one");
  same(socket._unacked, ["kept"], "and kept");
};

// In a session, a message that would read as an acknowledgement goes as
// bytes, and one that arrives as bytes is the application's.
cases.in_a_session_ack_shaped_messages_stay_the_applications = () => {
  const page = sessionPage();
  const { socket, events } = page;
  const ws = page.answer({ session: sid, received: 0 });
  socket.send('{"type":"ack","n":5}');
  check(ws.sent.at(-1) instanceof Uint8Array, "sent as bytes");
  const bytes = new TextEncoder().encode('{"type":"ack","n":1}').buffer;
  ws.receive(bytes);
  same(events.filter((e) => e.startsWith("message")).length, 1, "delivered");
  same(socket._unacked.length, 1, "and no count moved");
};

// close() says goodbye with 1000, which ends the session on the server;
// dropping a dead server says 4000, which keeps it.
cases.close_ends_the_session_a_timeout_does_not = () => {
  const page = sessionPage();
  const ws = page.answer({ session: sid, received: 0 });
  droppedAfter(page, ws, 3, "heartbeat timeout");
  page.clock.advance(1);
  const again = page.answer({ session: sid, received: 0 });
  same(page.sessionEvents, [["resume", 0]], "resumed");
  page.socket.close();
  same(again.closedWith, [1000, ""], "goodbye");
};

// A server that counts messages never sent is not the page's session: the
// connection is dropped for a fresh handshake.
cases.a_count_of_messages_never_sent_drops_the_connection = () => {
  const page = sessionPage();
  const ws = page.answer({ session: sid, received: 0 });
  ws.receive('{"type":"ack","n":3}');
  same(page.socket.state, "reconnecting", "state");
  same(ws.closedWith, [4000, "bad ack"], "close");
};

// The buffer bounds what waits for the server's count, connected or not.
cases.the_buffer_bounds_the_unacknowledged = () => {
  const page = sessionPage({ maxBuffered: 2 });
  page.answer({ session: sid, received: 0 });
  page.socket.send("1");
  page.socket.send("2");
  let thrown = null;
  try {
    page.socket.send("3");
  } catch (error) {
    thrown = error;
  }
  check(thrown instanceof BufferFullError, `threw ${thrown}`);
};

// A server that no longer offers sessions: the session is reported lost,
// and the page carries on without one.
cases.a_server_without_sessions_loses_the_session = () => {
  const page = sessionPage();
  const { socket, clock, sockets } = page;
  page.answer({ session: sid, received: 0 });
  sockets[0].drop(1006);
  clock.advance(1);
  const ws = sockets.at(-1);
  ws.open();
  ws.receive(hello(1, 3));
  same(page.sessionEvents, [["sessionlost", "unsupported", []]], "events");
  same(socket.sessionId, null, "no session");
  socket.send("plain");
  same(ws.sent.at(-1), "plain", "sent as before");
};
