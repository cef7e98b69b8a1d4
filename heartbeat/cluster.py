"""
The cluster, for C{pip install 'heartbeat[cluster]'}: presence and routing
across every server given the same Redis.

    from heartbeat.cluster import RedisCluster, RedisSessionStore

    cluster = RedisCluster("redis://127.0.0.1:6379/0")
    factory = HeartbeatServerFactory(cluster=cluster, sessions=RedisSessionStore(cluster))

(sessions in Redis, so that a client resumes on any node; without
C{sessions}, each server keeps its own in memory).

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
from ._session.redis import RedisSessionStore

__all__ = [
    "ClusterUnavailable",
    "LocalCluster",
    "NodeInfo",
    "PresentConnection",
    "RedisCluster",
    "RedisSessionStore",
    "parse_redis_url",
]
