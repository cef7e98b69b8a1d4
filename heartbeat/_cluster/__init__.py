"""
The cluster: what crosses processes (presence, routing, their counters)
behind one interface, with an in-process implementation that costs nothing
(L{heartbeat._cluster.local}) and one on Redis (L{heartbeat._cluster.redis}).

The cluster never imports the server: it deals in members, connections
with a number, maybe a name, and a way to deliver a line (see
L{heartbeat._cluster.interface.Member}).
"""
