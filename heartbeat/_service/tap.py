"""
C{twistd heartbeat}: one node, or a supervisor of several worker nodes.
"""

from __future__ import annotations

from twisted.application.service import IService, MultiService
from twisted.logger import Logger

from .node import node_service, session_window
from .server_options import ServerOptions as Options

log = Logger()


class _Started(MultiService):
    """
    The server's services, which say that the server is up once they have
    all started: a port that cannot be had stops twistd before anything
    that reads like success is logged.
    """

    def __init__(self, options: Options, service: IService) -> None:
        super().__init__()
        self.options = options
        service.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        options = self.options
        log.info(
            "heartbeat server on {port}: interval {interval}, timeout {timeout}, "
            "pong timeout {pongTimeout}, max {maxConnections} connections, "
            "{mode}, {auth}, {sessions}",
            auth=_auth(options),
            sessions=(
                "sessions kept {window:g}s{where}".format(
                    window=session_window(options),
                    where=" in Redis" if options["redis"] is not None else "",
                )
                if session_window(options)
                else "no sessions"
            ),
            port=options["port"],
            interval=options["interval"],
            timeout=options["timeout"],
            pongTimeout=options["pong-timeout"],
            maxConnections=options["max-connections"],
            mode="broadcast" if options["broadcast"] else "echo",
        )
        if options["resume-window"] and not session_window(options):
            log.warn(
                "no sessions: --workers without --redis, a client that comes "
                "back may reach a worker that does not hold its session (add "
                "--redis for sessions every worker can resume)"
            )
        if options["websocket-port"] is not None:
            log.info(
                "WebSocket and /heartbeat.js on {port}", port=options["websocket-port"]
            )
        if options["status-port"] is not None:
            log.info(
                "status page, /status.json and /metrics on {port}",
                port=options["status-port"],
            )
        if options["api-port"] is not None:
            log.info("push API on {port}", port=options["api-port"])


def _auth(options: Options) -> str:
    verifier = options["jwt-verifier"]
    if verifier is not None:
        return "JWT required (" + ", ".join(verifier.algorithms) + ")"
    return "auth required" if options["auth-token"] else "open (no auth)"


def makeService(options: Options) -> IService:
    if options["workers"] > 1:
        from twisted.internet import reactor

        from .machine import machine_service

        service = machine_service(options, reactor)
    else:
        service = node_service(options)
    return _Started(options, service)
