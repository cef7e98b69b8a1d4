// heartbeat.js: a WebSocket for pages that must stay connected.
//
// A page cannot see WebSocket ping frames, so it pings the server itself
// (JSON {"type":"ping","t":N}) whenever the server has been silent for
// `interval` seconds, and treats a server silent for `timeout` seconds as
// dead.  Once the server has answered one of its pings, a ping left
// unanswered (with nothing else heard) past the pong deadline also means
// dead: the measured round trip plus four times its variation, as TCP's
// retransmission timer, never below `pongTimeout`; and the page then has
// one ping outstanding at a time.  A dead server's socket is dropped and
// the page reconnects, waiting a random delay in
// [0, min(maxDelay, initialDelay * 2 ** attempt)] (full jitter) so that a
// crowd of pages cut off together does not return at the same instant.
// The attempts start over once a connection has proven healthy: the server
// sent something.  It also reconnects at once when the page becomes
// visible again or the browser comes back online, since timers may have
// been throttled meanwhile (and an attempt under way may hang on a network
// that is gone).  send() keeps messages while disconnected (up to
// maxBuffered) and sends them, in order, once healthy again.
//
// The page offers the subprotocol heartbeat.v1: a server that takes it
// waits for the page's own hello (its handshake: the name it goes by) and
// answers with its hello.  The server's first message on a connection, its
// hello, gives its timing (interval, timeout, pong timeout) and its message
// limit, each taken unless the page's own options set it; later ones, or
// any timing below MIN_SECONDS, are not taken: a peer's message relayed by
// the server cannot pass for one.
//
// authToken may be a function that returns the token (or a promise of
// it): it is called for each connection and, when the server's hello says
// when the token expires (a server verifying JWTs), for a fresh one once
// three quarters of that time are gone, sent as "auth <token>" on the open
// connection; the server answers with a hello carrying the fresh token's
// time.  A server that closes with 4003 (token expired) is reconnected to
// with a fresh token.
//
// It also asks for a session (unless its resume option is false): a
// server that offers one counts the page's messages and the page counts
// the server's, each side keeps what the other has not counted yet, and a
// reconnection resumes where the last connection stopped, sending again
// what did not arrive: every message reaches the other side once, in
// order.  The counts ride on the JSON heartbeats ("n") and on
// {"type":"ack","n":N}; a "resume" event says a reconnection resumed, a
// "sessionlost" event that the server could not (with the reason and the
// messages that may not have arrived).
//
// Plain ES module, no dependencies: import it from the server's
// /heartbeat.js.  Times are in seconds, like the server's options.  It runs
// as it is in Node 22 and later (their global WebSocket); elsewhere, pass a
// WebSocket constructor as an option (Node 20: the ws package's).

const OPEN = 1;
const EPSILON = 0.001;
// A deadline that fires this late means the page was frozen or its timers
// throttled: the server's messages may be waiting, unread, behind it.
const LATE = 0.05;
const CONTROL = new Set(["ping", "pong", "hello"]);
// On a connection that carries a session, "ack" carries a count too.
const SESSION_CONTROL = new Set(["ping", "pong", "hello", "ack"]);
// A session's count goes at once after this many messages, or this many
// seconds after the first of them.
const ACK_EVERY = 64;
const ACK_DELAY = 0.2;
// Close codes by which the server knows the page is gone for good.
const GOING_AWAY = 1000;
// The subprotocol by which the page says it sends a hello of its own.
const SUBPROTOCOL = "heartbeat.v1";
// Close codes, the server's by the same numbers.
const HEARTBEAT_TIMEOUT = 4000;
const UNAUTHORIZED = 4001;
const TOKEN_EXPIRED = 4003;
const TRY_AGAIN_LATER = 4013;
// Timing until a server says otherwise, and the shortest taken from one.
const INTERVAL = 25;
const TIMEOUT = 90;
const PONG_TIMEOUT = 5;
const MIN_SECONDS = 0.1;
// RFC 6298's gains for the smoothed round trip and its variation.
const RTT_GAIN = 1 / 8;
const VARIATION_GAIN = 1 / 4;
// The server's default --max-line-length, until its hello says.
const MAX_LENGTH = 65536;
// How long an attempt may take to hear from the server.
const CONNECT_TIMEOUT = 10;
// What a connection that failed is closed with, as browsers report it.
const ABNORMAL_CLOSURE = 1006;
// A fresh token goes once this share of the current one's time is gone; a
// token with less than MIN_LEFT seconds left is left to expire.
const REFRESH_AT = 0.75;
const MIN_LEFT = 2;

const browserClock = {
  now: () => performance.now() / 1000,
  setTimeout: (callback, seconds) => setTimeout(callback, seconds * 1000),
  clearTimeout: (id) => clearTimeout(id),
};

/**
 * Exponential backoff with full jitter; `random` returns [0, 1).
 */
export function backoffDelay(attempt, initialDelay = 1, maxDelay = 30, random = Math.random) {
  return Math.min(maxDelay, initialDelay * 2 ** attempt) * random();
}

/** send() found the buffer full while disconnected. */
export class BufferFullError extends Error {}

// A timing from the server: a finite number of seconds, not below
// MIN_SECONDS; anything else (null from a server that never pings or never
// drops, a string, a tiny number) is not taken.
function seconds(value) {
  return typeof value === "number" && Number.isFinite(value) && value >= MIN_SECONDS ? value : null;
}

// Node before 23 has no CloseEvent: an Event with the same fields.
function closeEvent(code, reason, wasClean) {
  if (typeof CloseEvent === "function") return new CloseEvent("close", { code, reason, wasClean });
  return Object.assign(new Event("close"), { code, reason, wasClean });
}

function parseControl(data, types = CONTROL) {
  if (typeof data !== "string" || data[0] !== "{" || data.length > 2048) return null;
  try {
    const message = JSON.parse(data);
    return types.has(message?.type) ? message : null;
  } catch {
    return null;
  }
}

// A session's count as a heartbeat carries it, or null.
function count(value) {
  return Number.isSafeInteger(value) && value >= 0 ? value : null;
}

/**
 * A reconnecting WebSocket with heartbeats.
 *
 * state: "connecting", "open" (the server has answered), "reconnecting"
 * (waiting out the backoff) or "closed" (after close()).  rtt: seconds of
 * the last answered ping, or null.  pongDeadline: seconds a ping may now go
 * unanswered before the server is dropped, or null while that rule does not
 * apply (the server has not answered a ping on this connection yet).
 * Events: "open", "close" (a CloseEvent for each lost connection; in Node
 * before 23, an Event with its code, reason and wasClean), "message" (a
 * MessageEvent, heartbeats never
 * included) and "statechange" (detail: {state, previous}).
 *
 * send() throws RangeError for a string holding a newline or a message
 * over the server's limit, which the server would refuse by closing the
 * socket (losing what follows); a message kept while disconnected that
 * turns out to be over the limit of the server's hello is not sent, and an
 * "error" event (detail: {data, error}) says so.
 *
 * Options: interval, timeout and pongTimeout (by default the server's, from
 * its hello; 25, 90 and 5 until then), maxLength (likewise, 65536 until then),
 * connectTimeout (10: an attempt that has not heard from the server by then
 * is dropped for the next; at most the timeout), initialDelay (1), maxDelay
 * (30), maxBuffered (1000), protocols, authToken (sent first, as "auth
 * <token>", for a server that requires it; refused, the socket closes for
 * good; a function returning the token, or a promise of it, is called for
 * each connection and for a fresh token before the server's expires; one
 * that throws or rejects fires "error" with detail {error} and the attempt
 * is dropped for the next), name (the name the page goes by in the server's presence),
 * WebSocket (the constructor, where there is no global one: the ws package
 * in Node 20); for tests, clock and random.
 *
 * serverHello: the server's answer to the page's hello on the current
 * connection (its id, timing and the name it granted), or null.
 *
 * Sessions (option resume, true by default): sessionId is the session's id
 * or null; send() keeps each message until the server acknowledges it
 * (maxBuffered bounds them: BufferFullError past it).  Events: "resume"
 * (detail: {replayed}, the messages sent again) when a reconnection resumed
 * the session, and "sessionlost" (detail: {reason, inDoubt}) when the
 * server could not: reason is the server's ("expired", "overflow",
 * "unknown", "mismatch", "closed") or "unsupported" (it offers none), and
 * inDoubt the messages the page had sent that the server never
 * acknowledged; messages the server sent meanwhile may be missing.
 * Messages sent while away that never left the page go in the new session.
 */
export class HeartbeatSocket extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.interval = options.interval ?? INTERVAL;
    this.timeout = options.timeout ?? TIMEOUT;
    this.pongTimeout = options.pongTimeout ?? PONG_TIMEOUT;
    this.maxLength = options.maxLength ?? MAX_LENGTH;
    this.connectTimeout = options.connectTimeout ?? CONNECT_TIMEOUT;
    this.initialDelay = options.initialDelay ?? 1;
    this.maxDelay = options.maxDelay ?? 30;
    this.maxBuffered = options.maxBuffered ?? 1000;
    this.state = "connecting";
    this.rtt = null;
    this.serverHello = null;
    this._options = options;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._clock = options.clock ?? browserClock;
    this._random = options.random ?? Math.random;
    this._buffer = [];
    this._attempt = 0;
    this._pings = 0;
    this._pingSentAt = null;
    this._earlierPingSentAt = null;
    this._srtt = null;
    this._rttvar = 0;
    this._dueAt = Infinity;
    this._graced = false;
    this._ws = null;
    this._timer = null;
    this._refreshTimer = null;
    this.sessionId = null;
    // The session: messages received and sent in it, those sent that the
    // server has not counted (oldest first), how many of them were ever
    // written, and how many received since the count was last told.
    this._inCount = 0;
    this._sent = 0;
    this._unacked = [];
    this._written = 0;
    this._owed = 0;
    this._ackTimer = null;
    // Whether the current connection carries the session.
    this._carrying = false;
    this._resume = () => this._resumeNow();
    this._visible = () => {
      if (globalThis.document?.visibilityState === "visible") this._resumeNow();
    };
    globalThis.addEventListener?.("online", this._resume);
    globalThis.document?.addEventListener("visibilitychange", this._visible);
    this._connect();
  }

  /** Send now if the connection is healthy, else after the next one. */
  send(data) {
    if (this.state === "closed") throw new Error("the socket is closed");
    const error = this._refusal(data);
    if (error !== null) throw error;
    const kept = this.buffered;
    // A socket the server is closing would drop the message silently.
    if (this.state === "open" && this._ws.readyState === OPEN && this.sessionId === null) {
      this._write(data);
    } else if (kept >= this.maxBuffered) {
      throw new BufferFullError(`${kept} messages already wait`);
    } else if (this.sessionId === null) {
      this._buffer.push(data);
    } else {
      this._keep(data);
    }
  }

  /** Ping the server now, to measure the round trip. */
  ping() {
    if (this._ws?.readyState !== OPEN) return;
    this._pings += 1;
    this._earlierPingSentAt = this._pingSentAt;
    this._pingSentAt = this._clock.now();
    this._control({ type: "ping", t: this._pings });
  }

  // A heartbeat, carrying the session's count once the session is on.
  _control(message) {
    if (this._carrying) {
      message.n = this._inCount;
      this._owed = 0;
    }
    this._ws.send(JSON.stringify(message));
  }

  // A message of the session: numbered, kept until the server counts it,
  // and written now if the connection carries the session.
  _keep(data) {
    this._unacked.push(data);
    this._sent += 1;
    if (this._carrying && this._ws.readyState === OPEN) {
      this._write(data);
      this._written = this._sent;
    }
  }

  // The server has counted n of the page's messages: drop those kept.
  _acknowledge(n) {
    const acked = this._sent - this._unacked.length;
    if (n > this._sent) return false;
    if (n > acked) this._unacked.splice(0, n - acked);
    return true;
  }

  /** How many messages are kept: waiting to be sent, or for the server's count. */
  get buffered() {
    return this._buffer.length + this._unacked.length;
  }

  get pongDeadline() {
    return this.pongTimeout && this._srtt !== null ? this._pingLifetime() : null;
  }

  /** Close for good: no more reconnecting; buffered messages are dropped. */
  close(code = GOING_AWAY, reason = "") {
    if (this.state === "closed") return;
    globalThis.removeEventListener?.("online", this._resume);
    globalThis.document?.removeEventListener("visibilitychange", this._visible);
    this._cancelTimer();
    this._cancelRefresh();
    this._cancelAck();
    this._buffer = [];
    this._unacked = [];
    this._setState("closed");
    this._ws?.close(code, reason);
  }

  _connect() {
    this._cancelTimer();
    this._setState("connecting");
    const ws = new this._WebSocket(this.url, [SUBPROTOCOL, ...(this._options.protocols ?? [])]);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => ws === this._ws && this._received(event.data);
    ws.onclose = (event) => ws === this._ws && this._lost(event.code, event.reason, event.wasClean);
    // An error is the end of the socket (browsers fire close after it; Node's
    // WebSocket does not when the connection is refused), and once the page
    // has left a socket it must be heard still: the ws package throws an
    // error nobody listens to.
    ws.onerror = () => ws === this._ws && this._failed();
    ws.onopen = () => ws === this._ws && this._opened();
    this._ws = ws;
    this.serverHello = null;
    this._lastHeard = this._clock.now();
    // A new connection, maybe by another path: nothing measured on it yet.
    this._pingSentAt = this._earlierPingSentAt = this._srtt = null;
    this._rttvar = 0;
    this._arm();
  }

  _opened() {
    const ws = this._ws;
    this._withToken(ws, (token) => {
      if (token != null) ws.send(`auth ${token}`);
      if (ws.protocol === SUBPROTOCOL) ws.send(JSON.stringify(this._handshake()));
      this.ping();
    });
  }

  // Calls use(token) once the token is known (at once, unless authToken is
  // a function returning a promise), while ws is still the open socket.  A
  // token that cannot be had ends the attempt, as a connection that failed.
  _withToken(ws, use) {
    const current = () => ws === this._ws && ws.readyState === OPEN;
    const failed = (error) => {
      if (!current()) return;
      this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
      this._failed();
    };
    let token = this._options.authToken;
    if (typeof token === "function") {
      try {
        token = token();
      } catch (error) {
        failed(error);
        return;
      }
    }
    if (typeof token?.then === "function") {
      token.then((value) => current() && use(value), failed);
    } else {
      use(token);
    }
  }

  // The server's hello says how long the token has left: a fresh one goes
  // once three quarters of that are gone, if authToken can make one.
  _expires(seconds) {
    this._cancelRefresh();
    if (typeof this._options.authToken !== "function" || typeof seconds !== "number"
        || !(seconds >= MIN_LEFT)) return;
    const ws = this._ws;
    this._refreshTimer = this._clock.setTimeout(() => {
      this._refreshTimer = null;
      this._withToken(ws, (token) => ws.send(`auth ${token}`));
    }, seconds * REFRESH_AT);
  }

  _cancelRefresh() {
    if (this._refreshTimer !== null) this._clock.clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  // What the page asks the server for: its name, when it has one, and its
  // session.
  _handshake() {
    const hello = { type: "hello" };
    if (this._options.name != null) hello.name = String(this._options.name);
    if (this._options.resume ?? true) {
      hello.resume = this.sessionId ?? true;
      if (this.sessionId !== null) hello.received = this._inCount;
    }
    return hello;
  }

  // The session the server's hello gives: ours resumed (what the server
  // has not received goes again), or lost, and a new one.
  _openSession(hello) {
    const granted = typeof hello?.session === "string" ? hello.session : null;
    const received = count(hello?.received);
    if (this.sessionId !== null) {
      const acked = this._sent - this._unacked.length;
      if (granted === this.sessionId && received !== null && received >= acked
          && this._acknowledge(received)) {
        return true;
      }
      const reason = granted === this.sessionId ? "mismatch"
        : granted === null ? "unsupported" : (hello.lost ?? "unknown");
      const inDoubt = this._unacked.slice(0, this._written - acked);
      // What never left the page goes first once the connection is open.
      this._buffer.unshift(...this._unacked.slice(this._written - acked));
      this.sessionId = null;
      this._unacked = [];
      this.dispatchEvent(new CustomEvent("sessionlost", { detail: { reason, inDoubt } }));
    }
    if (granted !== null && received === 0) {
      this.sessionId = granted;
      this._inCount = this._sent = this._written = this._owed = 0;
    }
    return false;
  }

  // Why the server would refuse a message, or null.
  _refusal(data) {
    let length;
    if (typeof data === "string") {
      if (data.includes("\n")) return new RangeError("a message must not contain a newline");
      // A UTF-16 unit takes at most 3 bytes of UTF-8: count them only when
      // that decides.
      if (data.length * 3 <= this.maxLength) return null;
      length = new TextEncoder().encode(data).length;
    } else {
      length = data.byteLength ?? data.size;
    }
    if (length > this.maxLength) {
      return new RangeError(`a message of ${length} bytes is over the server's limit of ${this.maxLength}`);
    }
    return null;
  }

  // A string the server would read as a heartbeat, or as a fresh token
  // ("auth ..."), goes as its bytes, so that it reaches the application
  // whole.
  _write(data) {
    const types = this._carrying ? SESSION_CONTROL : CONTROL;
    const plain = parseControl(data, types) === null
      && !(typeof data === "string" && data.startsWith("auth "));
    this._ws.send(plain ? data : new TextEncoder().encode(data));
  }

  _received(data) {
    const now = this._clock.now();
    this._lastHeard = now;
    let control = parseControl(data, this._carrying ? SESSION_CONTROL : CONTROL);
    const negotiated = this._ws.protocol === SUBPROTOCOL;
    if (this.state === "connecting") {
      const hello = control?.type === "hello" ? control : null;
      // Only a server that took the subprotocol answers the page's hello.
      const answer = negotiated ? hello : null;
      if (answer !== null) this.serverHello = answer;
      const resumed = this._openSession(answer);
      this._carrying = this.sessionId !== null;
      if (hello !== null) this._hello(hello);
      this._healthy(resumed);
      if (hello !== null) {
        if (answer !== null && this._ws !== null) this._expires(answer.expires);
        return;
      }
      control = parseControl(data, this._carrying ? SESSION_CONTROL : CONTROL);
    }
    // The answer to a fresh token.
    if (control?.type === "hello" && negotiated && this._ws !== null) this._expires(control.expires);
    if (control === null) {
      if (this._carrying) this._count();
      this.dispatchEvent(new MessageEvent("message", { data }));
      return;
    }
    const n = count(control.n);
    if (this._carrying && n !== null && control.type !== "hello" && !this._acknowledge(n)) {
      // The server counts messages never sent: its session is not ours.
      const ws = this._ws;
      this._lost(HEARTBEAT_TIMEOUT, "bad ack", false);
      ws.close(HEARTBEAT_TIMEOUT, "bad ack");
      return;
    }
    if (control.type === "ping") {
      if (Number.isInteger(control.t)) this._control({ type: "pong", t: control.t });
    } else if (control.type === "pong") {
      this._pong(control.t, now);
    }
  }

  // A message of the session received: counted, and the count told at
  // once after ACK_EVERY of them, else ACK_DELAY after the first.
  _count() {
    this._inCount += 1;
    this._owed += 1;
    if (this._owed >= ACK_EVERY) {
      this._tellCount();
    } else if (this._ackTimer === null) {
      this._ackTimer = this._clock.setTimeout(() => {
        this._ackTimer = null;
        this._tellCount();
      }, ACK_DELAY);
    }
  }

  _tellCount() {
    if (this._owed > 0 && this._carrying && this._ws.readyState === OPEN) {
      this._control({ type: "ack" });
    }
  }

  _cancelAck() {
    if (this._ackTimer !== null) this._clock.clearTimeout(this._ackTimer);
    this._ackTimer = null;
  }

  // A pong for the latest ping, or for the one before it if that was still
  // unanswered when the latest went out, gives a round-trip sample.
  _pong(t, now) {
    if (t === this._pings && this._pingSentAt !== null) {
      this._sample(now - this._pingSentAt);
      this._pingSentAt = null;
      // The next ping was held back until this pong: it may be due sooner.
      this._cancelTimer();
      this._arm();
    } else if (t === this._pings - 1 && this._earlierPingSentAt !== null) {
      this._sample(now - this._earlierPingSentAt);
      this._earlierPingSentAt = null;
    }
  }

  // RFC 6298's smoothed round trip and variation.
  _sample(rtt) {
    this.rtt = rtt;
    if (this._srtt === null) {
      this._srtt = rtt;
      this._rttvar = rtt / 2;
    } else {
      this._rttvar += VARIATION_GAIN * (Math.abs(this._srtt - rtt) - this._rttvar);
      this._srtt += RTT_GAIN * (rtt - this._srtt);
    }
  }

  // How long a ping to a server that has answered stays outstanding.
  _pingLifetime() {
    const floor = this.pongTimeout || 0;
    return this._srtt === null ? floor : Math.max(floor, this._srtt + 4 * this._rttvar);
  }

  // The server's timing and limit, for this connection.  A server that
  // never pings or never drops says null for one of them: the page still
  // needs both, so the missing one is derived from the other.
  _hello(hello) {
    let interval = seconds(hello.interval);
    let timeout = seconds(hello.timeout);
    if (interval !== null && timeout !== null && timeout <= interval) {
      interval = timeout = null;
    }
    interval ??= timeout === null ? INTERVAL : Math.min(INTERVAL, timeout / 2);
    timeout ??= Math.max(TIMEOUT, 2 * interval);
    this.interval = this._options.interval ?? interval;
    this.timeout = this._options.timeout ?? timeout;
    const pongTimeout = hello.pongTimeout;
    if (pongTimeout === 0 || seconds(pongTimeout) !== null) {
      this.pongTimeout = this._options.pongTimeout ?? pongTimeout;
    }
    if (Number.isSafeInteger(hello.maxLength) && hello.maxLength > 0) {
      this.maxLength = this._options.maxLength ?? hello.maxLength;
    }
  }

  _healthy(resumed) {
    this._attempt = 0;
    const replayed = resumed ? this._unacked.length : 0;
    if (resumed) {
      // What the server has not received goes again, before anything new.
      for (const data of this._unacked) this._write(data);
      this._written = this._sent;
    }
    for (const data of this._buffer.splice(0)) {
      const error = this._refusal(data);
      if (error !== null) {
        this.dispatchEvent(new CustomEvent("error", { detail: { data, error } }));
      } else if (this._carrying) {
        this._keep(data);
      } else {
        this._write(data);
      }
    }
    this._setState("open");
    // Past the connect timeout, on the server's timing.
    if (this.state === "open") {
      this._cancelTimer();
      this._arm();
    }
    if (resumed) this.dispatchEvent(new CustomEvent("resume", { detail: { replayed } }));
    this.dispatchEvent(new Event("open"));
  }

  _failed() {
    const ws = this._ws;
    this._lost(ABNORMAL_CLOSURE, "", false);
    ws.close();
  }

  _lost(code, reason, wasClean) {
    this._ws = null;
    this._carrying = false;
    this._cancelTimer();
    this._cancelRefresh();
    this._cancelAck();
    this.dispatchEvent(closeEvent(code, reason, wasClean));
    if (this.state === "closed") return;
    // Refused for good: trying again would not help; nor would a token
    // that expired, unless authToken is a function that makes fresh ones.
    if (code === UNAUTHORIZED
        || (code === TOKEN_EXPIRED && typeof this._options.authToken !== "function")) {
      this.close();
      return;
    }
    // A full server needs time, not a crowd: wait half to all of the cap.
    const delay = code === TRY_AGAIN_LATER
      ? this.maxDelay * (0.5 + 0.5 * this._random())
      : backoffDelay(this._attempt, this.initialDelay, this.maxDelay, this._random);
    this._attempt += 1;
    this._setState("reconnecting");
    this._timer = this._clock.setTimeout(() => this._connect(), delay);
  }

  // How long the server may be silent: until it has first spoken, the
  // connect timeout (no longer than the timeout).
  _limit() {
    const timeout = this.timeout || Infinity;
    return this.state === "connecting" ? Math.min(this.connectTimeout, timeout) : timeout;
  }

  // The next ping or deadline, whichever comes first; like the server, it
  // looks at the time of the last message only when it fires.
  _arm() {
    this._dueAt = this._nextEvent();
    if (this._dueAt !== Infinity) {
      const delay = Math.max(0, this._dueAt - this._clock.now());
      this._timer = this._clock.setTimeout(() => this._due(), delay);
    }
  }

  _nextEvent() {
    const last = this._lastHeard;
    const sentAt = this._pingSentAt;
    let when = last + this._limit();
    if (sentAt !== null && this._srtt !== null) {
      const expires = sentAt + this._pingLifetime();
      // Nothing heard since our ping: dead at its deadline.
      if (sentAt >= last && this.pongTimeout) return Math.min(when, expires);
      if (this.interval && this._ws.readyState === OPEN) {
        when = Math.min(when, Math.max(expires, Math.max(last, sentAt) + this.interval));
      }
    } else if (this.interval && this._ws.readyState === OPEN) {
      when = Math.min(when, Math.max(last, sentAt ?? -Infinity) + this.interval);
    }
    return when;
  }

  // Whether the server is to be dropped now: silent past the timeout, or
  // its ping unanswered past the pong deadline.
  _dead(now) {
    const sentAt = this._pingSentAt;
    if (now - this._lastHeard + EPSILON >= this._limit()) return "heartbeat timeout";
    if (sentAt !== null && sentAt >= this._lastHeard && this._srtt !== null && this.pongTimeout
        && now + EPSILON >= sentAt + this._pingLifetime()) {
      return "pong timeout";
    }
    return null;
  }

  _due() {
    this._timer = null;
    const now = this._clock.now();
    const dead = this._dead(now);
    if (dead !== null && now - this._dueAt > LATE && !this._graced) {
      // Let the messages that arrived meanwhile be read first.
      this._graced = true;
      this._timer = this._clock.setTimeout(() => this._due(), LATE);
      return;
    }
    this._graced = false;
    if (dead !== null) {
      // Dead, or unreachable: a close handshake would wait on it, so drop
      // the socket and go on at once.
      const ws = this._ws;
      const reason = this.state === "open" ? dead : "connect timeout";
      this._lost(HEARTBEAT_TIMEOUT, reason, false);
      ws.close(HEARTBEAT_TIMEOUT, reason);
      return;
    }
    // Every deadline up to now has been dealt with: what falls due now is
    // the ping.
    if (this.interval && this._ws.readyState === OPEN && this._nextEvent() <= now + EPSILON) {
      this.ping();
    }
    this._arm();
  }

  // Timers may have slept with the page or the network: look now.
  _resumeNow() {
    if (this.state === "reconnecting") {
      this._connect();
    } else if (this.state === "connecting") {
      // The attempt may hang on a network that is gone: start afresh.
      const pending = this._ws;
      this._connect();
      pending.close();
    } else if (this.state === "open") {
      this._cancelTimer();
      this._due();
    }
  }

  _cancelTimer() {
    if (this._timer !== null) this._clock.clearTimeout(this._timer);
    this._timer = null;
  }

  _setState(state) {
    const previous = this.state;
    if (state === previous) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state, previous } }));
  }
}
