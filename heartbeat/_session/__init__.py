"""
Sessions: every application line delivered exactly once, in order, across
reconnections.

A session outlives its connections: each side counts the lines it has
received and keeps the lines it has sent until the other side has counted
them, so that a new connection resumes where the last one stopped.  The
state of one side (L{heartbeat._session.session}) is the same for a client
and a server; a server keeps its clients' sessions in a store, in memory
(L{heartbeat._session.memory}) or in Redis (L{heartbeat._session.redis}),
and a session is a member of the cluster, so that presence and routing
reach it while its client is reconnecting.

This layer sits between the cluster and the roles: it may import the
core, the framings and the cluster; the server and the client import it.
"""
