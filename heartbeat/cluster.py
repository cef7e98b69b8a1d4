"""
The cluster, for C{pip install 'heartbeat[cluster]'}: presence and routing
across every server given the same Redis.

    from heartbeat.cluster import RedisCluster

    factory = HeartbeatServerFactory(cluster=RedisCluster("redis://127.0.0.1:6379/0"))

Import it once the reactor your application wants is installed: the Redis
client imports the global reactor.
"""

from ._cluster.address import parse_redis_url
from ._cluster.interface import (
    ClusterUnavailable,
    NodeInfo,
    PresentConnection,
)
from ._cluster.local import LocalCluster
from ._cluster.redis import RedisCluster

__all__ = [
    "ClusterUnavailable",
    "LocalCluster",
    "NodeInfo",
    "PresentConnection",
    "RedisCluster",
    "parse_redis_url",
]
