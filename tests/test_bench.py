"""
The benchmarks still run: tiny sizes, short times, the same code paths.
"""

import io

from bench import timers


def test_timer_designs_compare_and_detect_every_silent_peer():
    """The timer comparison prints all four designs; each timer design
    aborts every connection that fell silent."""
    out = io.StringIO()
    results = timers.compare(count=200, repeat=1, interval=0.1, out=out)
    assert [r["design"] for r in results] == ["floor", "reset", "sweep", "wheel"]
    assert [r["closed"] for r in results] == [0, 200, 200, 200]
    assert "wheel" in out.getvalue().splitlines()[-1]
