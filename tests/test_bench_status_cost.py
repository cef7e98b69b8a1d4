"""
bench/status_cost.py, which the README's figures for the status service
come from, still runs.
"""

from bench.status_cost import main


def test_status_cost_prints_every_figure(capsys):
    """A small run prints both memory figures and every timing."""
    main(["--connections", "100", "--memory", "20", "--repeat", "1"])
    out = capsys.readouterr().out
    for line in ["  line ", "  websocket ", "sample, each second", "a page's snapshot",
                 "/metrics", "/status.json built", "/status.json answered"]:
        assert line in out
