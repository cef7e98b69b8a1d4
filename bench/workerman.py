"""
Workerman's documented heartbeat example, serving C{pong}, for the
scenarios to run beside the floor and heartbeat.

Nothing of Workerman's is kept here: C{--workerman DIR} (or the
environment variable C{HEARTBEAT_BENCH_WORKERMAN}) names a directory laid
out as C{bench/README} says, holding Workerman's sources, those of the
C{workerman/coroutine} package it requires, and the pecl C{event}
extension built for the machine's PHP.  This module writes the example as
a PHP file into the run's log directory, with a small autoloader in place
of Composer's, and says why it cannot when something is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional

ENVIRONMENT = "HEARTBEAT_BENCH_WORKERMAN"

# The example from Workerman's manual ("heartbeat detection"): the server
# records each connection's last message, and a timer closes those silent
# for more than HEARTBEAT_TIME seconds (55, checked every 10 s there).  It
# never pings; its clients must.  The only change is what it answers:
# pong to a ping, and every other line back, as the other servers do.
EXAMPLE = r"""<?php
// Workerman's documented heartbeat example, serving pong; written by
// python -m bench (bench/workerman.py) for one run.
use Workerman\Timer;
use Workerman\Worker;

define('WORKERMAN', %(workerman)s);
define('COROUTINE', %(coroutine)s);

spl_autoload_register(function ($class) {
    $roots = ['Workerman\\Coroutine\\' => COROUTINE, 'Workerman\\' => WORKERMAN];
    foreach ($roots as $prefix => $directory) {
        if (strncmp($class, $prefix, strlen($prefix)) === 0) {
            $file = $directory . '/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
                return;
            }
        }
    }
    if ($class === 'Workerman\\Coroutine') {
        require COROUTINE . '/Coroutine.php';
    }
});

define('HEARTBEAT_TIME', %(timeout)s);
Worker::$pidFile = %(pidFile)s;
Worker::$logFile = %(logFile)s;

$worker = new Worker('text://127.0.0.1:%(port)d');
$worker->onMessage = function ($connection, $msg) {
    $connection->lastMessageTime = time();
    if (strncmp($msg, 'ping', 4) === 0) {
        $connection->send('pong' . substr($msg, 4));
    } else {
        $connection->send($msg);
    }
};
$worker->onWorkerStart = function ($worker) {
    Timer::add(%(check)s, function () use ($worker) {
        $time_now = time();
        foreach ($worker->connections as $connection) {
            if (empty($connection->lastMessageTime)) {
                $connection->lastMessageTime = $time_now;
                continue;
            }
            if ($time_now - $connection->lastMessageTime > HEARTBEAT_TIME) {
                $connection->close();
            }
        }
    });
};
Worker::runAll();
"""


def _php_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Workerman:
    """
    A Workerman installation laid out as C{bench/README} says.
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory).resolve()
        self.php = shutil.which("php")

    def missing(self) -> Optional[str]:
        """
        Why Workerman cannot run, or C{None} when it can.
        """
        if self.php is None:
            return "no php on PATH (apt-get install php-cli)"
        for path in ("workerman/src/Worker.php", "coroutine/src/Context.php"):
            if not (self.directory / path).is_file():
                return f"no {self.directory / path}"
        if self.extension() is None and not self._eventLoaded():
            return f"no {self.directory / 'event.so'}, and php has no event extension"
        return None

    def extension(self) -> Optional[Path]:
        path = self.directory / "event.so"
        return path if path.is_file() else None

    def _eventLoaded(self) -> bool:
        modules = subprocess.run(
            [self.php, "-m"], capture_output=True, text=True
        ).stdout.split()
        return "event" in modules

    def command(self, port: int, timeout: float, check: float, logdir: str) -> List[str]:
        """
        Write the example for C{port} into C{logdir}; the command that
        runs it in the foreground.
        """
        script = Path(logdir) / f"workerman-{port}.php"
        source = EXAMPLE % {
            "timeout": repr(float(timeout)),
            "check": repr(float(check)),
            "port": port,
            "pidFile": _php_string(str(Path(logdir) / f"workerman-{port}.pid")),
            "logFile": _php_string(str(Path(logdir) / f"workerman-{port}.log")),
            "workerman": _php_string(str(self.directory / "workerman" / "src")),
            "coroutine": _php_string(str(self.directory / "coroutine" / "src")),
        }
        script.write_text(source)
        command = [self.php]
        extension = self.extension()
        if extension is not None:
            command += ["-d", f"extension={extension}"]
        return command + ["-d", "memory_limit=-1", str(script), "start"]


def configured() -> Optional[Workerman]:
    """
    The installation named by C{HEARTBEAT_BENCH_WORKERMAN}, if any.
    """
    directory = os.environ.get(ENVIRONMENT)
    return Workerman(directory) if directory else None
