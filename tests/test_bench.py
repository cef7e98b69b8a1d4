"""
The benchmarks still run: tiny sizes, short times, the same code paths.
"""

import io

from bench import scenarios, timers


def test_timer_designs_compare_and_detect_every_silent_peer():
    """The timer comparison prints all four designs; each timer design
    aborts every connection that fell silent."""
    out = io.StringIO()
    results = timers.compare(count=200, repeat=1, interval=0.1, out=out)
    assert [r["design"] for r in results] == ["floor", "reset", "sweep", "wheel"]
    assert [r["closed"] for r in results] == [0, 200, 200, 200]
    assert "wheel" in out.getvalue().splitlines()[-1]


def test_hold_scenario_runs_against_the_floor(tmp_path):
    """The socket scenarios still start both servers, load them over
    127.0.0.x and print ratios to the floor."""
    out = scenarios.hold(["floor", "heartbeat"], [50], 0.5, str(tmp_path))
    rows = [line.split() for line in out.splitlines()[4:] if line.strip()]
    assert [row[1] for row in rows] == ["floor", "heartbeat"]
    assert [row[2] for row in rows] == ["50", "50"]
    assert rows[0][4] == "1.00x"


def test_detection_time_scenario_closes_every_dead_peer(tmp_path):
    """The detection-time table runs: peers that answered pings and died
    are all closed, within the interval plus the pong timeout of their
    last data, give or take the machine's lateness."""
    [rule] = [r for r in scenarios.DETECTION_RULES if r[0] == "pong deadline"]
    out = scenarios.detection_time(20, 50.0, str(tmp_path), [rule])
    row = out.splitlines()[-1].split()
    assert row[:5] == ["pong", "deadline", "1.8", "0.1", "20/20"]
    lastData99 = float(row[9])
    assert 0.5 + 0.1 <= lastData99 <= 0.5 + 0.1 + 0.5


def test_api_scenario_times_every_line_to_both_nodes(tmp_path):
    """The push API scenario runs on two nodes of a real Redis: every line
    sent through the API reaches its name, on the API's node and on the
    other, in the latency run and in the flood."""
    from bench import api

    from .redisserver import require_redis

    require_redis()
    out = api.latency(20, 100.0, 0.5, 2, str(tmp_path))
    rows = [line.split("  ") for line in out.splitlines()[-2:]]
    assert [row[0].strip() for row in rows] == ["same node", "other node"]
    for line in out.splitlines()[-2:]:
        assert " 20/20 " in line
        received, sent = line.split()[-1].split("/")
        assert received == sent and int(sent) > 0


def test_session_scenarios_run_side_by_side(tmp_path):
    """The sessions' benchmark still loads the server with and without
    sessions, holds every connection of both, and replays kept lines."""
    from bench import sessions

    out = sessions.hold(40, 0.5, 1, str(tmp_path))
    plain, session = [line.split() for line in out.splitlines()[4:] if line.strip()]
    assert plain[1:4] == ["no", "session", "40"] and session[1:3] == ["session", "40"]
    out = sessions.throughput(10, 0.5, 1, str(tmp_path))
    rows = [line.split() for line in out.splitlines()[4:] if line.strip()]
    # Lines echoed per second, each way.
    assert len(rows) == 2 and all(float(row[-5].replace(",", "")) > 0 for row in rows)
    out = sessions.replay(100, 1, str(tmp_path))
    assert out.splitlines()[-1].split()[0] == "100"
