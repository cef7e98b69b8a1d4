"""
The cluster's options: C{--redis}, C{--node-id} and C{--node-timeout}.
"""

from __future__ import annotations

from twisted.python import usage

from .._cluster.identity import check_node_id
from .options import positive_float, require_extra


class ClusterOptions(usage.Options):
    """
    Mixed into the plugin's options.  After parsing, C{redis} holds a
    L{heartbeat._cluster.address.RedisAddress} or C{None}.
    """

    optParameters = [
        [
            "redis",
            None,
            None,
            "Join the cluster that every server given this Redis forms: "
            "redis://[[user]:password@]host:port/db, rediss://... (TLS; "
            "?ca=FILE to trust a private CA) or unix:///path/redis.sock?db=N. "
            "One cluster per database: give another cluster another db. "
            "Needs heartbeat[cluster]. [default: this process alone]",
        ],
        [
            "node-id",
            None,
            None,
            "This server's id in the cluster, unique among its live nodes; "
            "workers are ID/1, ID/2... [default: hostname:pid]",
        ],
        [
            "node-timeout",
            None,
            "5",
            "Seconds after which the other nodes take a silent node for "
            "dead and remove its connections from presence.",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["node-timeout"] = positive_float(self, "node-timeout")
        if self["node-id"] is not None:
            try:
                check_node_id(self["node-id"])
            except ValueError as e:
                raise usage.UsageError(f"--node-id: {e}")
        if self["redis"] is None:
            return
        require_extra("redis", "txredisapi", "cluster")
        try:
            from .._cluster.address import parse_redis_url

            self["redis"] = parse_redis_url(self["redis"])
        except ValueError as e:
            raise usage.UsageError(f"--redis: {e}")
        if self["redis"].ca is not None:
            try:
                open(self["redis"].ca, "rb").close()
            except OSError as e:
                raise usage.UsageError(
                    f"--redis: cannot read ca={self['redis'].ca!r}: {e.strerror}"
                )
