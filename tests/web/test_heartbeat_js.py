"""
heartbeat.js in Chromium, against a fake clock and a fake WebSocket: each
case of heartbeat_test.js is one test.
"""

import re
from pathlib import Path

import pytest

from .conftest import WEB

HERE = Path(__file__).parent
CASES = re.findall(r"^cases\.(\w+) = ", (HERE / "heartbeat_test.js").read_text(), re.M)
assert len(CASES) >= 10, "the cases of heartbeat_test.js were not found"
ORIGIN = "http://127.0.0.1:9"  # never reached: every request is answered below
FILES = {
    "/heartbeat.js": WEB / "heartbeat.js",
    "/heartbeat_test.js": HERE / "heartbeat_test.js",
}
PAGE = """<!doctype html><script type="module">
import { cases, made } from "/heartbeat_test.js";
window.runCase = async (name) => {
  try { await cases[name](); return null; }
  catch (error) { return String(error.stack || error); }
  finally { for (const socket of made.splice(0)) socket.close(); }
};
</script>"""


@pytest.fixture(scope="module")
def js_page(browser):
    context = browser.new_context()
    page = context.new_page()

    def answer(route):
        path = route.request.url[len(ORIGIN):]
        if path == "/":
            route.fulfill(body=PAGE, content_type="text/html")
        else:
            route.fulfill(body=FILES[path].read_bytes(), content_type="text/javascript")

    page.route(ORIGIN + "/**", answer)
    page.goto(ORIGIN + "/")
    page.wait_for_function("window.runCase !== undefined")
    yield page
    context.close()


@pytest.mark.parametrize("case", CASES)
def test_heartbeat_js(js_page, case):
    """heartbeat.js keeps the rule the case is named after."""
    assert js_page.evaluate("name => window.runCase(name)", case) is None
