"""
The package as users get it: a wheel installed into a fresh environment.
"""

import re
import shlex
import subprocess
import sys
import zipfile

from .processes import ROOT, wait_for


def run(*argv, **kwargs):
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=300, check=True, **kwargs
    )


def test_installed_package_provides_plugin_and_command(tmp_path):
    """pip install . (not editable) gives twistd a heartbeat subcommand and
    a heartbeat-client command, from any directory."""
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
        str(tmp_path / "dist"), str(ROOT))
    [wheel] = (tmp_path / "dist").glob("heartbeat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/heartbeat_plugin.py" in names
    assert "heartbeat/py.typed" in names
    # The browser files, served from the package by the web ports.
    for name in ("heartbeat.js", "status.html", "status.js"):
        assert f"heartbeat/web/{name}" in names
    # An __init__.py here would shadow the real twisted package.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    run(str(venv / "bin" / "pip"), "install", "-q", str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listing = run(str(venv / "bin" / "twistd"), "--help", cwd=elsewhere).stdout
    assert "heartbeat" in listing
    options = run(str(venv / "bin" / "twistd"), "heartbeat", "--help",
                  cwd=elsewhere).stdout
    assert "--max-connections" in options
    client = run(str(venv / "bin" / "heartbeat-client"), "--help",
                 cwd=elsewhere).stdout
    assert "--max-delay" in client


def test_a_missing_extra_names_the_command_that_installs_it(tmp_path):
    """Installed from a clone without the status extra, --status-port says
    in one line what to run, and once that is run the port serves."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    run(str(venv / "bin" / "pip"), "install", "-q", str(ROOT), cwd=tmp_path)
    twistd = [str(venv / "bin" / "twistd"), "-n", "--pidfile=", "heartbeat",
              "--port", "tcp:0:interface=127.0.0.1",
              "--status-port", "tcp:0:interface=127.0.0.1"]
    refused = subprocess.run(twistd, capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert (refused.returncode, refused.stdout) == (1, "")
    hint = re.fullmatch(
        r"heartbeat: --status-port needs prometheus_client \(the status extra\): "
        r"(.* -m pip install 'prometheus_client>=0\.17')\n",
        refused.stderr,
    )
    assert hint, refused.stderr
    command = shlex.split(hint.group(1))
    assert command[0].startswith(str(venv / "bin" / "python"))
    run(*command, cwd=tmp_path)
    log = tmp_path / "twistd.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(twistd, stdout=output, stderr=subprocess.STDOUT,
                                  cwd=tmp_path)
    try:
        wait_for(lambda: server.poll() is not None
                 or "status page, /status.json and /metrics on" in log.read_text(),
                 timeout=30, what="the status port")
        assert server.poll() is None, log.read_text()
    finally:
        server.kill()
        server.wait()
