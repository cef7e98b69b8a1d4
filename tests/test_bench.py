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


def test_workerman_is_skipped_with_one_line_when_missing(tmp_path):
    """Without Workerman, python -m bench says so in one line (what to
    read to get it) and runs the rest; a directory missing a piece names
    the piece."""
    from bench.__main__ import _workerman

    out = io.StringIO()
    assert _workerman(None, out) == []
    assert _workerman(str(tmp_path), out) == []
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("workerman: skipped (") for line in lines)
    assert "see bench/README" in lines[0]
    assert "Worker.php" in lines[1] or "php" in lines[1]


def test_the_summary_puts_the_servers_side_by_side():
    """The closing table gives each server's figures as ratios to the
    floor's, from the scenarios that ran."""
    figures = {
        "floor": {(100, 25.0): (2000, 0.010, 0.0005),
                  (100, 10.0): (2000, 0.020, 0.0005), "throughput": 50000},
        "heartbeat": {(100, 25.0): (1800, 0.011, 0.0006),
                      (100, 10.0): (1900, 0.018, 0.0007),
                      "throughput": 100000, "late": 0.0006},
    }
    out = scenarios.summary(figures, 100, ["floor", "heartbeat", "workerman"])
    rows = [line.split() for line in out.splitlines()[4:] if line.strip()]
    assert rows[0] == ["floor", "2,000", "1.00x", "1.00x", "1.00x", "0.50",
                       "1.00x", "1.00x", "-"]
    assert rows[1] == ["heartbeat", "1,900", "0.95x", "1.10x", "0.90x",
                       "0.70", "1.40x", "0.50x", "0.06%"]
    assert len(rows) == 2


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


def test_reconnect_scenario_shows_the_backlog_beside_twisteds(tmp_path):
    """The reconnect table has heartbeat restarted with its own listen
    backlog and with Twisted's 50, and every client comes back to both."""
    out = scenarios.reconnect(["heartbeat"], 200, str(tmp_path))
    rows = [line.split("  ")[0] for line in out.splitlines()[-2:]]
    assert rows == ["heartbeat", "heartbeat backlog=50"]
    for line in out.splitlines()[-2:]:
        back = line[len("heartbeat backlog=50"):].split()[0]
        assert int(back.replace(",", "")) >= 200


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
