"""
C{twistd heartbeat}: one node, or a supervisor of several worker nodes.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.logger import Logger

from .machine import machine_service
from .node import node_service
from .server_options import ServerOptions as Options

log = Logger()


def makeService(options: Options) -> IService:
    log.info(
        "heartbeat server on {port}: interval {interval}, timeout {timeout}, "
        "max {maxConnections} connections, {mode}, {auth}",
        auth="auth required" if options["auth-token"] else "open (no auth)",
        port=options["port"],
        interval=options["interval"],
        timeout=options["timeout"],
        maxConnections=options["max-connections"],
        mode="broadcast" if options["broadcast"] else "echo",
    )
    if options["workers"] > 1:
        from twisted.internet import reactor

        return machine_service(options, reactor)
    return node_service(options)
