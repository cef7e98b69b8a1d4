"""
Presence in Redis: the keys, and the Lua scripts that change them, each
in one atomic step, none of which holds Redis for long.

Keys (in the database the URL names; one cluster per database)::

    heartbeat:nodes          sorted set: node id, scored by its deadline
                             (Redis's own TIME plus the node's timeout)
    heartbeat:node:ID        hash: the node's incarnation, timeout, last heard
    heartbeat:conns:ID       hash: connection key -> name, the node's records
    heartbeat:name:NAME      hash: connection key -> since, a name's records
                             (since prefixed with v: the name was verified)
    heartbeat:names          sorted set (all scores 0): the present names
    heartbeat:dead:ID        hash: the records of a node being removed
    heartbeat:released:ID    set: the sessions of a node being removed
    heartbeat:dying          hash: node id -> "REASON CURSOR INCARNATION",
                             the nodes whose records are being removed, how
                             far, and which life of the node it was
    heartbeat:clock          Redis's TIME at the last beat of any node
    heartbeat:epoch          a token drawn when the cluster's data began
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
every write checks, so that a node removed while it was cut off cannot
leave records behind that nobody would ever remove.

Nothing grows with a node's connections in one step: Redis runs one
script at a time, and one that ran for half a second (a node of 100,000
connections registering, or removed) would time out every other node's
commands.  A node registers in batches of L{MAX_BATCH} changes, reading
its old records a page at a time, and a node found dead is first retired
in one step that costs the same whatever it held (its records are renamed
aside, under C{heartbeat:dead:ID}), then removed L{REAP_CHUNK} records at
a time, each with its leave, by whichever nodes beat, until none is left.

A node's deadline is Redis's own TIME plus its timeout, and every beat
records that TIME (C{heartbeat:clock}).  When no node could beat for
longer than twice the beat period (Redis hung, restarted from its saved
data, failed over to a replica, its clock stepped), the first beat after
that moves every deadline on by the gap, and by the time a node takes to
reconnect and beat: no node is taken for dead for the time nobody could
beat.

The scripts reach keys they build from the prefix: this needs a single
Redis (with replicas, or Valkey), not Redis Cluster.

A presence event is a line, C{J NODE NAME} or C{L NODE REASON NAME} with
REASON C{c} (closed), C{t} (timeout), C{d} (node died) or C{e} (a
session expired); a message may hold several, one per line.  Node ids
and names hold no space and no newline (see
L{heartbeat._cluster.identity}), so that no name can break an event:
names are UTF-8 as they are.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

PREFIX = "heartbeat:"

REASON_CODES = {"closed": "c", "timeout": "t", "node died": "d", "expired": "e"}
REASONS_BY_CODE = {code: reason for reason, code in REASON_CODES.items()}

# Changes (joins, leaves) in one script, at most.
MAX_BATCH = 1000
# Records of a dead node removed by one script, at most.
REAP_CHUNK = 1000
# Records of its own a registering node reads back in one page.
SCAN_PAGE = 1000


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
    for line in message.decode("utf-8", "replace").split("\n"):
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


# The functions every script shares.
_LIBRARY = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- The cluster's clock: Redis's TIME at the last beat of any node.  When
-- no node could beat for longer than SLACK (Redis hung, restarted from its
-- saved data, failed over, or its clock stepped), every deadline moves by
-- the gap, and by ALLOWANCE, the time a node takes to reconnect and beat:
-- the time nobody could beat does not count against anyone.
local function tick(prefix, t, slack, allowance)
  local clock = prefix .. 'clock'
  local last = tonumber(redis.call('GET', clock))
  if last and (t - last > slack or t < last) then
    local nodes = prefix .. 'nodes'
    local entries = redis.call('ZRANGE', nodes, 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      redis.call('ZADD', nodes, tonumber(entries[i + 1]) + t - last + allowance,
        entries[i])
    end
  end
  redis.call('SET', clock, string.format('%.6f', t))
end

local function drop(prefix, node, key, name, code, events)
  local nameKey = prefix .. 'name:' .. name
  redis.call('HDEL', nameKey, key)
  if redis.call('EXISTS', nameKey) == 0 then
    redis.call('ZREM', prefix .. 'names', name)
  end
  events[#events + 1] = 'L ' .. node .. ' ' .. code .. ' ' .. name
end

-- Takes a node out of the cluster in one step, whatever it held: out of
-- the set of nodes first (so of the nodes that find it dead at once, one
-- does this), its record gone (so its writes fail from now on), its
-- records and sessions set aside for reap() to remove with a leave
-- (reason CODE) each, and to release.
local function retire(prefix, node, code)
  local nodeKey = prefix .. 'node:' .. node
  local incarnation = redis.call('HGET', nodeKey, 'incarnation') or ''
  redis.call('ZREM', prefix .. 'nodes', node)
  redis.call('DEL', nodeKey)
  local conns = prefix .. 'conns:' .. node
  local held = prefix .. 'sessions:' .. node
  local aside = false
  if redis.call('EXISTS', conns) == 1 then
    redis.call('RENAME', conns, prefix .. 'dead:' .. node)
    aside = true
  end
  if redis.call('EXISTS', held) == 1 then
    redis.call('RENAME', held, prefix .. 'released:' .. node)
    aside = true
  end
  if aside then
    redis.call('HSET', prefix .. 'dying', node, code .. ' 0 ' .. incarnation)
  end
end

-- A session OWNER (a node's life, NODE#INCARNATION) held waits for its
-- client for its window, counted from now: any node may resume it until
-- then.  One another node, or the node's next life, has taken meanwhile is
-- that one's.
local function release(prefix, owner, sid, t)
  local key = prefix .. 'session:' .. sid
  if redis.call('HGET', key, 'owner') ~= owner then return end
  local window = tonumber(redis.call('HGET', key, 'window') or '0')
  redis.call('HSET', key, 'owner', '', 'expires', tostring(t + window))
  redis.call('PEXPIRE', key, math.floor((window + 3600) * 1000))
  redis.call('PEXPIRE', key .. ':lines', math.floor(window * 1000) + 1)
end

-- Removes up to LIMIT records and sessions set aside by retire(): node
-- WANTED's when it has some, else any node's.  Returns how many nodes
-- still have some.
local function reap(prefix, wanted, limit, events)
  local dying = prefix .. 'dying'
  local node = nil
  if wanted ~= '' and redis.call('HEXISTS', dying, wanted) == 1 then
    node = wanted
  else
    node = redis.call('HKEYS', dying)[1]
  end
  if not node then return 0 end
  local code, cursor, incarnation = string.match(
    redis.call('HGET', dying, node), '^(%a) (%d+) ?(%S*)$')
  local dead = prefix .. 'dead:' .. node
  local reaped = 0
  repeat
    local reply = redis.call('HSCAN', dead, cursor, 'COUNT', limit)
    cursor = reply[1]
    local records = reply[2]
    for i = 1, #records, 2 do
      if redis.call('HDEL', dead, records[i]) == 1 then
        drop(prefix, node, records[i], records[i + 1], code, events)
        reaped = reaped + 1
      end
    end
  until cursor == '0' or reaped >= limit
  local released = prefix .. 'released:' .. node
  if reaped < limit then
    local t = now()
    for _, sid in ipairs(redis.call('SPOP', released, limit - reaped)) do
      release(prefix, node .. '#' .. incarnation, sid, t)
    end
  end
  if redis.call('EXISTS', dead) == 0 and redis.call('EXISTS', released) == 0 then
    redis.call('HDEL', dying, node)
  else
    redis.call('HSET', dying, node, code .. ' ' .. cursor .. ' ' .. incarnation)
  end
  return redis.call('HLEN', dying)
end

local function publish(channel, events)
  for i = 1, #events, 500 do
    redis.call('PUBLISH', channel,
      table.concat(events, '\\n', i, math.min(i + 499, #events)))
  end
end
"""

# ARGV: prefix, node, incarnation, presence channel, then changes of four
# fields each, applied in order: J, key, name, since (a join); L, key,
# name, reason code (a leave, told if Redis had the record); or F, key,
# name, reason code (a leave told whatever Redis has: one that Redis,
# having lost its data, cannot know of).  A join Redis already has is not
# told again, nor a leave of a record it does not have, so that a batch
# sent again changes nothing.  One message publishes their events.
# Returns {registered (0: nothing was changed), events}.
CHANGES = _LIBRARY + """
local prefix, node = ARGV[1], ARGV[2]
if redis.call('HGET', prefix .. 'node:' .. node, 'incarnation') ~= ARGV[3] then
  return {0, 0}
end
local conns = prefix .. 'conns:' .. node
local events = {}
for i = 5, #ARGV - 3, 4 do
  local kind, key, name = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if kind == 'J' then
    if redis.call('HSET', conns, key, name) == 1 then
      redis.call('HSET', prefix .. 'name:' .. name, key, ARGV[i + 3])
      redis.call('ZADD', prefix .. 'names', 0, name)
      events[#events + 1] = 'J ' .. node .. ' ' .. name
    end
  elseif redis.call('HDEL', conns, key) == 1 or kind == 'F' then
    drop(prefix, node, key, name, ARGV[i + 3], events)
  end
end
publish(ARGV[4], events)
return {1, #events}
"""

# ARGV: prefix, node, incarnation, timeout, presence channel, slack,
# allowance, limit.  Moves the node's deadline (when it is registered),
# retires the
# nodes whose deadline has passed, and removes up to LIMIT records of
# retired nodes.  Returns {registered (0 or 1), nodes retired, nodes that
# still have records to remove}.
HEARTBEAT = _LIBRARY + """
local prefix, node = ARGV[1], ARGV[2]
local t = now()
tick(prefix, t, tonumber(ARGV[6]), tonumber(ARGV[7]))
local nodeKey = prefix .. 'node:' .. node
local registered = redis.call('HGET', nodeKey, 'incarnation') == ARGV[3]
if registered then
  redis.call('ZADD', prefix .. 'nodes', t + tonumber(ARGV[4]), node)
  redis.call('HSET', nodeKey, 'heard', string.format('%.6f', t))
end
local dead = redis.call('ZRANGEBYSCORE', prefix .. 'nodes', '-inf', t, 'LIMIT', 0, 100)
for _, other in ipairs(dead) do retire(prefix, other, 'd') end
local events = {}
local pending = reap(prefix, '', tonumber(ARGV[8]), events)
publish(ARGV[5], events)
if registered then return {1, #dead, pending} end
return {0, #dead, pending}
"""

# ARGV: prefix, presence channel, wanted node (or ''), limit.  Removes up
# to LIMIT records of retired nodes, the wanted node's first.  Returns
# {nodes that still have records to remove, whether the wanted one does}.
REAP = _LIBRARY + """
local events = {}
local pending = reap(ARGV[1], ARGV[3], tonumber(ARGV[4]), events)
publish(ARGV[2], events)
return {pending, redis.call('HEXISTS', ARGV[1] .. 'dying', ARGV[3])}
"""

# ARGV: prefix, node, incarnation, timeout, slack, allowance, epoch.  The
# first step of registering, and a beat (for the cluster's clock): the node
# record, with a fresh deadline, unless
#   - the node's records of a previous retirement are still being
#     removed, or a previous life of the node that has stopped beating is
#     there (it is retired here): 'reaping', remove them first;
#   - another incarnation that still beats (another process with the same
#     id: its deadline is ahead, and it beat within two of its periods)
#     holds the id: 'in use'.
# Returns {state, epoch}: state 'fresh' (the node had no record: it has
# none in Redis) or 'existing' (read its records, and send what differs),
# and the cluster's epoch, drawn (from ARGV) if Redis had none: one that
# differs from the one a node knew means Redis lost the cluster's data.
BEGIN = _LIBRARY + """
local prefix, node, incarnation = ARGV[1], ARGV[2], ARGV[3]
local t = now()
tick(prefix, t, tonumber(ARGV[5]), tonumber(ARGV[6]))
local epoch = redis.call('GET', prefix .. 'epoch')
if not epoch then
  epoch = ARGV[7]
  redis.call('SET', prefix .. 'epoch', epoch)
end
local dying = prefix .. 'dying'
if redis.call('HEXISTS', dying, node) == 1 then return {'reaping', epoch} end
local nodeKey = prefix .. 'node:' .. node
local current = redis.call('HGET', nodeKey, 'incarnation')
if current and current ~= incarnation then
  local deadline = tonumber(redis.call('ZSCORE', prefix .. 'nodes', node))
  local heard = tonumber(redis.call('HGET', nodeKey, 'heard'))
  local period = math.min(1, tonumber(redis.call('HGET', nodeKey, 'timeout')) / 5)
  if deadline and deadline > t and heard and t - heard <= 2 * period then
    return {'in use', epoch}
  end
  retire(prefix, node, 'd')
  if redis.call('HEXISTS', dying, node) == 1 then return {'reaping', epoch} end
  current = nil
end
redis.call('HSET', nodeKey, 'incarnation', incarnation, 'timeout', ARGV[4],
  'heard', string.format('%.6f', t))
redis.call('ZADD', prefix .. 'nodes', t + tonumber(ARGV[4]), node)
if current then return {'existing', epoch} end
return {'fresh', epoch}
"""

# ARGV: prefix, node, incarnation.  The node leaves the cluster at once (it
# is stopping): retired, its connections to be removed as closed.  Returns
# 1, or 0 if it was not registered.
UNREGISTER = _LIBRARY + """
if redis.call('HGET', ARGV[1] .. 'node:' .. ARGV[2], 'incarnation') ~= ARGV[3] then
  return 0
end
retire(ARGV[1], ARGV[2], 'c')
return 1
"""

# KEYS: name.  ARGV: sending node, node channel prefix, message.
# Publishes the message once to each other node that holds the name.
# Returns how many of the name's connections, as presence records them,
# are on the nodes that received it (a node that is dead, not listening,
# or removed counts none).
ROUTE = """
local nodes = {}
for _, key in ipairs(redis.call('HKEYS', KEYS[1])) do
  local node = string.match(key, '^(.*)#')
  if node and node ~= ARGV[1] then
    nodes[node] = (nodes[node] or 0) + 1
  end
end
local count = 0
for node, held in pairs(nodes) do
  if redis.call('PUBLISH', ARGV[2] .. node, ARGV[3]) > 0 then
    count = count + held
  end
end
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
