"""
Presence in Redis: the keys, and the Lua scripts that change them, each
in one atomic step.

Keys (in the database the URL names)::

    heartbeat:nodes          sorted set: node id, scored by its deadline
                             (Redis's own TIME plus the node's timeout)
    heartbeat:node:ID        hash: the node's incarnation, timeout, last heard
    heartbeat:conns:ID       hash: connection key -> name, the node's records
    heartbeat:name:NAME      hash: connection key -> since, a name's records
    heartbeat:names          sorted set (all scores 0): the present names
    heartbeat:session:ID     hash, and heartbeat:session:ID:lines, list: a
                             client's session (see heartbeat._session.scripts)
    heartbeat:sessions:ID    set: the ids of the sessions a node holds

Channels (Redis's channels are not per database, so they carry it)::

    heartbeat:DB:presence    joins and leaves, for every node's hooks
    heartbeat:DB:all         broadcast lines
    heartbeat:DB:node:ID     lines for one node's connections

The joins and leaves of one reactor turn are one script (so a crowd
arriving at once costs a few commands, not one each), and so is each node
heartbeat; a node's records exist only while its node record does, which
every write checks, so that a node removed while it was cut off cannot leave records
behind that nobody would ever remove.  The scripts reach keys they build
from the prefix: this needs a single Redis (with replicas, or Valkey),
not Redis Cluster.

A presence event is a line, C{J NODE NAME} or C{L NODE REASON NAME} with
REASON C{c} (closed), C{t} (timeout), C{d} (node died) or C{e} (a
session expired); a message may
hold several, one per line.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

PREFIX = "heartbeat:"

REASON_CODES = {"closed": "c", "timeout": "t", "node died": "d", "expired": "e"}
REASONS_BY_CODE = {code: reason for reason, code in REASON_CODES.items()}


class Schema:
    """
    The names of the keys and channels of one cluster.
    """

    def __init__(self, db: int) -> None:
        self.prefix = PREFIX
        self.nodes = PREFIX + "nodes"
        self.names = PREFIX + "names"
        channels = f"{PREFIX}{db}:"
        self.presenceChannel = channels + "presence"
        self.broadcastChannel = channels + "all"
        self.nodeChannelPrefix = channels + "node:"

    def node(self, node: str) -> str:
        return f"{PREFIX}node:{node}"

    def conns(self, node: str) -> str:
        return f"{PREFIX}conns:{node}"

    def name(self, name: str) -> str:
        return f"{PREFIX}name:{name}"

    def nodeChannel(self, node: str) -> str:
        return self.nodeChannelPrefix + node


def parse_events(message: bytes) -> Iterator[Tuple[str, str, Optional[str]]]:
    """
    The presence events in a message: C{(node, name, None)} for a join,
    C{(node, name, reason)} for a leave.  Lines that are not events (from
    a newer version, say) are skipped.
    """
    for line in message.decode("ascii", "replace").split("\n"):
        kind, _, rest = line.partition(" ")
        if kind == "J":
            node, _, name = rest.partition(" ")
            if node and name:
                yield node, name, None
        elif kind == "L":
            node, _, rest = rest.partition(" ")
            code, _, name = rest.partition(" ")
            reason = REASONS_BY_CODE.get(code)
            if node and name and reason:
                yield node, name, reason


# Removes a node and every record of it, collecting a leave for each.
# Removing it from the sorted set comes first: of the nodes that find it
# dead at once, only one finds it there.
_LIBRARY = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function drop(prefix, node, key, name, code, events)
  local nameKey = prefix .. 'name:' .. name
  redis.call('HDEL', nameKey, key)
  if redis.call('EXISTS', nameKey) == 0 then
    redis.call('ZREM', prefix .. 'names', name)
  end
  events[#events + 1] = 'L ' .. node .. ' ' .. code .. ' ' .. name
end

-- The sessions a node held wait for their clients, for their window,
-- counted from now: any node may resume them until then.
local function release(prefix, node)
  local held = prefix .. 'sessions:' .. node
  local t = now()
  for _, sid in ipairs(redis.call('SMEMBERS', held)) do
    local key = prefix .. 'session:' .. sid
    local window = tonumber(redis.call('HGET', key, 'window') or '0')
    redis.call('HSET', key, 'owner', '', 'expires', tostring(t + window))
    redis.call('PEXPIRE', key, math.floor((window + 3600) * 1000))
    redis.call('PEXPIRE', key .. ':lines', math.floor(window * 1000) + 1)
  end
  redis.call('DEL', held)
end

local function reap(prefix, node, code, events)
  redis.call('ZREM', prefix .. 'nodes', node)
  local conns = prefix .. 'conns:' .. node
  local records = redis.call('HGETALL', conns)
  for i = 1, #records, 2 do
    drop(prefix, node, records[i], records[i + 1], code, events)
  end
  redis.call('DEL', conns, prefix .. 'node:' .. node)
  release(prefix, node)
end

local function publish(channel, events)
  for i = 1, #events, 500 do
    redis.call('PUBLISH', channel,
      table.concat(events, '\\n', i, math.min(i + 499, #events)))
  end
end
"""

# ARGV: prefix, node, incarnation, presence channel, then changes of four
# fields each, applied in order: J, key, name, since (a join) or L, key,
# name, reason code (a leave).  One message publishes their events.
# Returns 0 when the node is not registered (nothing is changed).
CHANGES = _LIBRARY + """
local prefix, node = ARGV[1], ARGV[2]
if redis.call('HGET', prefix .. 'node:' .. node, 'incarnation') ~= ARGV[3] then
  return 0
end
local conns = prefix .. 'conns:' .. node
local events = {}
for i = 5, #ARGV - 3, 4 do
  local key, name = ARGV[i + 1], ARGV[i + 2]
  if ARGV[i] == 'J' then
    redis.call('HSET', conns, key, name)
    redis.call('HSET', prefix .. 'name:' .. name, key, ARGV[i + 3])
    redis.call('ZADD', prefix .. 'names', 0, name)
    events[#events + 1] = 'J ' .. node .. ' ' .. name
  elseif redis.call('HDEL', conns, key) == 1 then
    drop(prefix, node, key, name, ARGV[i + 3], events)
  end
end
publish(ARGV[4], events)
return 1
"""

# ARGV: prefix, node, incarnation, timeout, presence channel.  Moves the
# node's deadline (when it is registered), then removes up to 16 nodes
# whose deadline has passed.  Returns {registered (0 or 1), nodes reaped}.
HEARTBEAT = _LIBRARY + """
local prefix, node = ARGV[1], ARGV[2]
local t = now()
local nodeKey = prefix .. 'node:' .. node
local registered = redis.call('HGET', nodeKey, 'incarnation') == ARGV[3]
if registered then
  redis.call('ZADD', prefix .. 'nodes', t + tonumber(ARGV[4]), node)
  redis.call('HSET', nodeKey, 'heard', tostring(t))
end
local events = {}
local dead = redis.call('ZRANGEBYSCORE', prefix .. 'nodes', '-inf', t, 'LIMIT', 0, 16)
for _, other in ipairs(dead) do reap(prefix, other, 'd', events) end
publish(ARGV[5], events)
if registered then return {1, #dead} end
return {0, #dead}
"""

# ARGV: prefix, node, incarnation, timeout, presence channel, N, then N
# records (key, name, since), then (key, reason code) for connections
# that left while Redis could not be told.  Makes the node's records
# what the node says they are: a previous life of the node is reaped,
# records the node no longer has leave, missing ones join.  Returns the
# number of events.
REGISTER = _LIBRARY + """
local prefix, node, incarnation = ARGV[1], ARGV[2], ARGV[3]
local nodeKey = prefix .. 'node:' .. node
local conns = prefix .. 'conns:' .. node
local current = redis.call('HGET', nodeKey, 'incarnation')
local events = {}
local old = {}
if current and current ~= incarnation then
  reap(prefix, node, 'd', events)
elseif current then
  local records = redis.call('HGETALL', conns)
  for i = 1, #records, 2 do old[records[i]] = records[i + 1] end
end
local n = tonumber(ARGV[6])
for i = 0, n - 1 do
  local key, name, since = ARGV[7 + 3 * i], ARGV[8 + 3 * i], ARGV[9 + 3 * i]
  if old[key] == name then
    old[key] = nil
  else
    if old[key] then
      drop(prefix, node, key, old[key], 'c', events)
      old[key] = nil
    end
    redis.call('HSET', conns, key, name)
    redis.call('HSET', prefix .. 'name:' .. name, key, since)
    redis.call('ZADD', prefix .. 'names', 0, name)
    events[#events + 1] = 'J ' .. node .. ' ' .. name
  end
end
local reasons = {}
for i = 7 + 3 * n, #ARGV - 1, 2 do reasons[ARGV[i]] = ARGV[i + 1] end
for key, name in pairs(old) do
  redis.call('HDEL', conns, key)
  drop(prefix, node, key, name, reasons[key] or 'c', events)
end
local t = now()
redis.call('HSET', nodeKey, 'incarnation', incarnation, 'timeout', ARGV[4],
  'heard', tostring(t))
redis.call('ZADD', prefix .. 'nodes', t + tonumber(ARGV[4]), node)
publish(ARGV[5], events)
return #events
"""

# ARGV: prefix, node, incarnation, presence channel.  The node leaves the
# cluster at once (it is stopping): its connections leave as closed.
UNREGISTER = _LIBRARY + """
if redis.call('HGET', ARGV[1] .. 'node:' .. ARGV[2], 'incarnation') ~= ARGV[3] then
  return 0
end
local events = {}
reap(ARGV[1], ARGV[2], 'c', events)
publish(ARGV[4], events)
return #events
"""

# KEYS: name.  ARGV: sending node, node channel prefix, message.
# Publishes the message once to each other node that holds the name.
# Returns how many of the name's connections are on those nodes.
ROUTE = """
local nodes, count = {}, 0
for _, key in ipairs(redis.call('HKEYS', KEYS[1])) do
  local node = string.match(key, '^(.*)#')
  if node and node ~= ARGV[1] then
    count = count + 1
    nodes[node] = true
  end
end
for node in pairs(nodes) do redis.call('PUBLISH', ARGV[2] .. node, ARGV[3]) end
return count
"""

# ARGV: prefix.  Each node: {id, seconds since heard, seconds left before
# its deadline, connections}.
NODES = _LIBRARY + """
local t = now()
local entries = redis.call('ZRANGE', ARGV[1] .. 'nodes', 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #entries, 2 do
  local node = entries[i]
  local heard = redis.call('HGET', ARGV[1] .. 'node:' .. node, 'heard')
  out[#out + 1] = {
    node,
    tostring(t - tonumber(heard or t)),
    tostring(tonumber(entries[i + 1]) - t),
    redis.call('HLEN', ARGV[1] .. 'conns:' .. node),
  }
end
return out
"""
