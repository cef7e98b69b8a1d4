"""
The README's page and the status page in headless Chromium, against a real
server on loopback that the test freezes, kills and restarts.
"""

import json
import re
import textwrap
import threading
import time
from pathlib import Path

import pytest

from urllib.request import urlopen

from ..processes import wait_for
from ..webserver import AnsweringPeer, WebServer

README = Path(__file__).parents[2] / "README.rst"


def readme_page(websocket_port, options=None):
    """
    The README's ten-line page, pointed at the test's server, its socket
    given C{options} if any.
    """
    text = README.read_text()
    start = text.index("    <!doctype html>")
    block = textwrap.dedent(text[start:text.index("\n\n", start)])
    assert len(block.splitlines()) == 10
    assert block.count("localhost:8080") == 2
    if options is not None:
        assert block.count('/");') == 1
        block = block.replace('/");', f'/", {json.dumps(options)});')
    return block.replace("localhost:8080", f"127.0.0.1:{websocket_port}").encode()


@pytest.fixture
def twistd():
    """Start servers that are stopped after the test, restarts included."""
    servers = []

    def start(*options, ports):
        servers.append(WebServer(*options, ports=ports))
        return servers[-1]

    def restart(server):
        servers.append(server.restart())
        return servers[-1]

    start.restart = restart
    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def opened():
    """Peers and pages a test opens, closed after it whatever happens."""
    things = []
    yield things
    for thing in things:
        thing.close()


def open_page(page, url):
    """Load the README page; return the list its console lines go to."""
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(url)
    page.wait_for_function("window.socket !== undefined")
    page.evaluate("""() => {
        window.states = [];
        socket.addEventListener("statechange",
            () => states.push([socket.state, performance.now()]));
    }""")
    return console


def logged(page, console, line):
    """Whether the page has logged C{line}; asking the page lets Playwright
    deliver the console events waiting for it."""
    page.title()
    return line in console


def state(page):
    """What the README page shows: its state, in its title."""
    return page.title()


def test_page_survives_a_dead_server(page, twistd, serve_page, figure):
    """The README page shows open; a frozen server is noticed within the
    timeout; after a restart the page reconnects within its backoff cap (1 s
    here) and what was sent meanwhile arrives, in order."""
    timeout, maxDelay = 1.5, 1.0
    server = twistd("--interval", "0.5", "--timeout", str(timeout),
                    ports=("port", "websocket-port"))
    url = serve_page(readme_page(server.ports["websocket-port"], {"maxDelay": maxDelay}))
    console = open_page(page, url)
    wait_for(lambda: state(page) == "open", 10, what="page open")
    wait_for(lambda: logged(page, console, "got hello"), 5, what="the first echo")

    server.pause()
    paused = page.evaluate("states.length = 0; performance.now()")
    wait_for(lambda: state(page) in ("reconnecting", "closed"), timeout + 5,
             what="dead server noticed")
    # Measured in the page, so that the test's polling does not count.
    noticed = (page.evaluate("states[0][1]") - paused) / 1000
    assert noticed < timeout + 0.5
    page.evaluate("for (let i = 0; i < 5; i++) socket.send('m' + i)")
    assert state(page) != "open"

    server = twistd.restart(server)
    restarted = time.monotonic()
    wait_for(lambda: state(page) == "open", maxDelay + 5, what="page back")
    back = time.monotonic() - restarted
    # The next attempt comes within the cap; the rest is loopback and the
    # test's polling.
    assert back < maxDelay + 1.0
    wait_for(lambda: logged(page, console, "got m4"), 5, what="the buffered echoes")
    got = [line for line in console if line.startswith("got ")]
    assert got == ["got hello"] + [f"got m{i}" for i in range(5)]
    states = [s for s, _ in page.evaluate("states")]
    assert states[:2] == ["reconnecting", "connecting"] and states[-1] == "open"
    figure("browser, timeout 1.5 s: frozen server noticed after", noticed, "s")
    figure("browser: back after the server restarted, within", back, "s")


def test_frozen_page_keeps_its_connection(page, twistd, serve_page):
    """A page whose scripts cannot run (paused, as a frozen tab's are) is
    still answered for by the browser: the server keeps it and measures its
    round trip, and once running again the page carries on without a
    reconnection."""
    timeout = 1.0
    server = twistd("--interval", "0.3", "--timeout", str(timeout),
                    ports=("port", "websocket-port", "status-port"))
    open_page(page, serve_page(readme_page(server.ports["websocket-port"])))
    wait_for(lambda: state(page) == "open", 10, what="page open")

    def status():
        return json.load(urlopen(server.url("status-port", "/status.json"), timeout=5))

    page.evaluate("states.length = 0")
    devtools = page.context.new_cdp_session(page)
    devtools.send("Debugger.enable")
    devtools.send("Debugger.pause")
    before = status()["totals"]
    time.sleep(4 * timeout)
    during = status()
    devtools.send("Debugger.resume")
    time.sleep(timeout)
    after = status()

    assert during["totals"]["pings_received"] == before["pings_received"]
    assert during["totals"]["pings_sent"] >= before["pings_sent"] + 5
    [row] = during["connections"]
    assert row["silent_for"] < timeout and row["rtt"] is not None
    assert after["totals"]["timed_out"] == 0 and after["totals"]["accepted"] == 1
    assert after["totals"]["pings_received"] > before["pings_received"]
    assert page.evaluate("states") == [] and state(page) == "open"


def test_status_page_lists_connections_and_draws(browser, page, twistd, serve_page, artifacts,
                                                 opened):
    """The status page lists the test's line and WebSocket peers with their
    round trips (a peer that pings on its own schedule is said to) and a
    name one gave itself, marked unverified, its node, and where a
    connection is; its chart draws; a screenshot is kept."""
    server = twistd("--interval", "0.5", "--timeout", "1.5",
                    ports=("port", "websocket-port", "status-port"))
    peers = []
    for _ in range(3):
        peers.append(AnsweringPeer(server.ports["port"]))
        opened.append(peers[-1])
    # One names itself: the page marks its name as merely claimed.
    peers[0].sock.sendall(b"heartbeat/1 name=alice\n")
    pinger = AnsweringPeer(server.ports["port"])
    opened.append(pinger)

    def keep_pinging():
        try:
            while not pinger.closed:
                pinger.send(b"ping mine")
                # Within the interval, so the server never pings it, and
                # above the --min-ping-interval of 0.25 s.
                time.sleep(0.35)
        except OSError:
            pass

    threading.Thread(target=keep_pinging, daemon=True).start()
    # The pages ping a silent server later than it pings them, so that it
    # is the server that measures their round trips: at the same interval
    # whichever side's timer fires first pings.
    url = serve_page(readme_page(server.ports["websocket-port"], {"interval": 2}))
    for _ in range(2):
        opened.append(browser.new_page())
        open_page(opened[-1], url)
    page.set_viewport_size({"width": 1100, "height": 760})
    page.goto(server.url("status-port"))

    def rows():
        cells = page.eval_on_selector_all(
            "#connections tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        measured = [r for r in cells if re.fullmatch(r"\d+\.\d ms", r[7])]
        if len(cells) == 6 and len(measured) == 5:
            return cells

    pinging = "127.0.0.1:%d" % pinger.sock.getsockname()[1]
    table = wait_for(rows, 10, what="six connections, five round trips")
    assert sorted(r[1] for r in table) == ["line"] * 4 + ["websocket"] * 2
    line_ports = {"127.0.0.1:%d" % p.sock.getsockname()[1] for p in peers}
    assert {r[2] for r in table if r[1] == "line"} == line_ports | {pinging}
    [unmeasured] = [r for r in table if not r[7].endswith(" ms")]
    assert unmeasured[2] == pinging and unmeasured[7:9] == ["peer pings"] * 2
    assert page.text_content("#open") == "6"
    nodes = page.eval_on_selector_all(
        "#nodes tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [(n[1], n[2]) for n in nodes] == [("alive", "6")]

    presence = json.load(urlopen(server.url("status-port", "/presence.json"), timeout=5))
    names = [entry["name"] for entry in presence["names"]]
    keys = [name for name in names if "#" in name]
    assert len(names) == 6 and len(keys) == 5 and "alice" in names
    [named] = [r for r in table if r[4].startswith("alice")]
    assert named[4] == "alice unverified"
    measuredIds = {r[0] for r in table if r[7].endswith(" ms")}
    measuredKey = next(key for key in keys if key.rsplit(".", 1)[1] in measuredIds)
    page.fill("#name", measuredKey)
    page.click("#search button")
    page.wait_for_selector("#where:not([hidden])")
    [found] = page.eval_on_selector_all(
        "#where tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    # Found by its key, it has no name to mark.
    assert found[1] == measuredKey and found[2] == ""
    assert re.fullmatch(r"\d+\.\d ms", found[6])

    def drawn():
        points = page.eval_on_selector_all(
            "#chart polyline", "lines => lines.map(l => l.getAttribute('points'))")
        return all(len(p.split()) >= 3 for p in points) and len(points) == 2

    wait_for(drawn, 10, what="chart drawn with three samples")
    time.sleep(0.3)
    page.screenshot(path=str(artifacts / "status-page.png"), full_page=True)
