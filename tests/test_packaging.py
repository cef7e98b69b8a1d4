"""
The package as users get it: a wheel installed into a fresh environment.
"""

import subprocess
import sys
import zipfile

from .processes import ROOT


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
