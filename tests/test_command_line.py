"""
The installed commands, run as a user runs them: exactly what they print on
standard output and standard error, and their exit status.
"""

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import twisted

from heartbeat import __version__

from .processes import ENV

BIN = Path(sys.executable).parent
TWISTD = [str(BIN / "twistd"), "-n", "--pidfile=", "heartbeat"]
CLIENT = [str(BIN / "heartbeat-client")]


def run(argv, timeout=60, **kwargs):
    return subprocess.run(
        argv, env=ENV, capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.mark.parametrize(
    "argv, error",
    [
        (
            ["--interval", "10", "--timeout", "5"],
            "--timeout must be greater than --interval (5 <= 10): a peer must "
            "get a ping before it is declared dead",
        ),
        (["--max-connections", "0"], "--max-connections must be a whole number >= 1, not '0'"),
        (["--port", "nonsense:1"], "--port 'nonsense:1' is not a server endpoint: "
         "Unknown endpoint type: 'nonsense'"),
        (["--bogus"], "option --bogus not recognized"),
    ],
)
def test_a_bad_server_value_is_one_line(argv, error):
    """A bad value prints one line naming the option, on standard error,
    without the usage, and twistd exits with status 1."""
    result = run(TWISTD + argv)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"heartbeat: {error}\n"
    )


def test_server_help_is_the_whole_usage():
    """--help still prints every option, on standard output."""
    result = run(TWISTD + ["--help"])
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: twistd [options] heartbeat [options]\n")
    for option in ("--port=", "--interval=", "--websocket-port=", "--workers=",
                   "--version"):
        assert option in result.stdout


def test_server_version_names_heartbeat():
    """--version says heartbeat's version, and Twisted's and Python's."""
    result = run(TWISTD + ["--version"])
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"heartbeat {__version__} (Twisted {twisted.__version__}, "
        f"Python {platform.python_version()})\n"
    )
