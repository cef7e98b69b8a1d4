"""
A server factory that remembers what an operator wants to see: who is
connected since when, who keeps coming back, and how round trips spread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from itertools import count
from typing import Any, Dict, List, Optional, Tuple

from .._server.admission import CountedByServer
from .._server.factory import HeartbeatServerFactory
from .buckets import RTT_BUCKETS
from .report import node_report

__all__ = ["RTT_BUCKETS", "MonitoredServerFactory"]



def _host(protocol: Any) -> Optional[str]:
    try:
        return getattr(protocol.transport.getPeer(), "host", None)
    except Exception:
        return None


class MonitoredServerFactory(HeartbeatServerFactory):
    """
    L{HeartbeatServerFactory} plus what the status page and the metrics
    show; every listener of the server (line or WebSocket) feeds it.

    @ivar connectionInfo: for each live connection, C{(id, since)}: a
        number that is never reused and the clock's time it was admitted.
    @ivar reconnects: connections from an address whose previous connection
        had ended less than L{reconnectWindow} seconds before: a sign of
        clients that keep losing their connection.
    @ivar reconnectWindow: seconds an ended connection's address is kept.
    @ivar maxRemembered: at most this many ended addresses are kept, so a
        crowd of one-off visitors cannot grow the memory.
    @ivar rttCounts: round-trip samples per bucket of L{RTT_BUCKETS}, and
        above the last one.
    @ivar rttSum: the sum of all round-trip samples, in seconds.
    """

    reconnectWindow = 60.0
    maxRemembered = 10000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connectionInfo: Dict[CountedByServer, Tuple[int, float]] = {}
        self.reconnects = 0
        self.rttCounts: List[int] = [0] * (len(RTT_BUCKETS) + 1)
        self.rttSum = 0.0
        self._ids = count(1)
        self._ended: "OrderedDict[str, float]" = OrderedDict()

    def registerConnection(self, protocol: Any) -> bool:
        if not super().registerConnection(protocol):
            return False
        now = self.clock.seconds()
        self._forget(now)
        host = _host(protocol)
        if host is not None and self._ended.pop(host, None) is not None:
            self.reconnects += 1
        self.connectionInfo[protocol] = (next(self._ids), now)
        return True

    def unregisterConnection(self, protocol: Any) -> None:
        super().unregisterConnection(protocol)
        if self.connectionInfo.pop(protocol, None) is None:
            return
        host = _host(protocol)
        if host is not None:
            now = self.clock.seconds()
            self._ended.pop(host, None)
            self._ended[host] = now
            self._forget(now)

    def reports(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """
        What the operator's view shows of this node: its one report.
        """
        return [node_report(self, limit)]

    def roundTripMeasured(self, protocol: CountedByServer, rtt: float) -> None:
        self.rttCounts[bisect_left(RTT_BUCKETS, rtt)] += 1
        self.rttSum += rtt

    def _forget(self, now: float) -> None:
        ended = self._ended
        while ended and (
            len(ended) > self.maxRemembered
            or now - next(iter(ended.values())) > self.reconnectWindow
        ):
            ended.popitem(last=False)
