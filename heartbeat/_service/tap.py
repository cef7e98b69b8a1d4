"""
C{twistd heartbeat}: one node, or a supervisor of several worker nodes.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.logger import Logger

from .node import node_service
from .server_options import ServerOptions as Options
from .supervisor import WorkerPool

log = Logger()


def makeService(options: Options) -> IService:
    log.info(
        "heartbeat server on {port}: interval {interval}, timeout {timeout}, "
        "pong timeout {pongTimeout}, max {maxConnections} connections, "
        "{mode}, {auth}",
        auth="auth required" if options["auth-token"] else "open (no auth)",
        port=options["port"],
        interval=options["interval"],
        timeout=options["timeout"],
        pongTimeout=options["pong-timeout"],
        maxConnections=options["max-connections"],
        mode="broadcast" if options["broadcast"] else "echo",
    )
    if options["workers"] > 1:
        return WorkerPool(options["port"], options["workers"], options.arguments)
    return node_service(options)
