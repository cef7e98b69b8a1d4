"""
The proof in Chromium: heartbeat.js and the server exchange 10,000
numbered messages each way through a path cut at 20 random points, and
across a server frozen (SIGSTOP) long enough for the page to drop it: the
page's application and the server's each receive exactly 1..10,000, in
order, once.
"""

import signal
import time

from ..processes import FaultProxy, wait_for
from ..resumeproof import (
    COUNT,
    CUTS,
    RATE,
    SessionApp,
    cut_at_random,
    first_difference,
    lines_of,
    numbered,
)

PAGE = """<!doctype html><script type="module">
import { HeartbeatSocket } from "http://127.0.0.1:%(assets)d/heartbeat.js";
const socket = new HeartbeatSocket("ws://127.0.0.1:%(proxy)d/", { initialDelay: 0.05, maxDelay: 0.2 });
window.got = [];
window.lost = [];
window.resumed = 0;
socket.addEventListener("message", (event) => got.push(event.data));
socket.addEventListener("sessionlost", (event) => lost.push(event.detail.reason));
socket.addEventListener("resume", () => { window.resumed += 1; });
let sent = 0;
setInterval(() => {
  for (let i = 0; i < %(perTick)d && sent < %(count)d && socket.buffered < socket.maxBuffered; i++) {
    socket.send("c" + ++sent);
  }
}, 10);
window.socket = socket;
</script>"""

# The server is frozen once, in the middle of the cuts, for this long:
# well over what the page needs to drop it (an interval plus its pong
# deadline, which a busy machine's jitter makes longer).
FREEZE = 2.0


def test_the_page_and_the_server_get_every_message_once(page, serve_page, tmp_path, figure):
    """Through 20 random cuts and a server freeze, every message the page
    sends reaches the server's application once, in order, and every
    message of the server reaches the page's once, in order; the page is
    told each reconnection resumed, and no session is lost."""
    app = SessionApp(tmp_path / "record")
    proxy = FaultProxy(app.websocketPort)
    try:
        body = PAGE % {"assets": app.websocketPort, "proxy": proxy.port,
                       "perTick": RATE // 100, "count": COUNT}
        page.goto(serve_page(body.encode()))
        page.wait_for_function("window.socket !== undefined")

        def freeze(number):
            if number == CUTS // 2:
                before = page.evaluate("resumed")
                app.process.send_signal(signal.SIGSTOP)
                time.sleep(FREEZE)
                app.process.send_signal(signal.SIGCONT)
                # The page dropped the frozen server, and resumed once back.
                wait_for(lambda: page.evaluate("resumed") > before, timeout=20,
                         what="the session resumed after the freeze")

        made = cut_at_random(proxy, int(time.time_ns() % 1_000_000),
                             lambda: page.evaluate("resumed"), extra=freeze)
        started = time.monotonic()
        wait_for(lambda: page.evaluate("got.length") >= COUNT
                 and len(lines_of(app.record)) >= COUNT,
                 timeout=90, interval=0.1, what="every message")
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        got = [line.encode() for line in page.evaluate("got")]
        assert got == numbered(b"s"), "page: " + first_difference(got, numbered(b"s"))
        record = lines_of(app.record)
        assert record == numbered(b"c"), "server: " + first_difference(record, numbered(b"c"))
        assert page.evaluate("lost") == []
        resumed = page.evaluate("resumed")
        assert resumed >= CUTS + 1
        log = app.log()
        assert "cannot resume" not in log and "Traceback" not in log, log
        figure("proof in Chromium: messages each way / cuts (reset, blackhole, "
               "blackhole then reset) + server frozen",
               f"{COUNT} / {made['reset']}, {made['blackhole']}, "
               f"{made['blackhole then reset']} + {FREEZE:g} s")
        figure("proof in Chromium: reconnections resumed, as the page was told", resumed)
        figure("proof in Chromium: seconds until every message was in, after the last cut",
               elapsed, "s")
    finally:
        proxy.stop()
        app.process.send_signal(signal.SIGCONT)
        app.stop()
