"""
Sessions in Redis: the keys, and the Lua scripts that change them, each
in one atomic step.

Keys (beside the cluster's, with its prefix)::

    heartbeat:session:ID         hash: state ("live", or why it ended),
                                 owner (NODE#INCARNATION holding it, or ""
                                 after that node died or left), epoch
                                 (raised by each move to another owner),
                                 name, window, received (client lines the
                                 server's application has received), sent
                                 (server lines recorded), acked (those the
                                 client has counted), expires (when its
                                 owner is gone: until when it may be
                                 resumed)
    heartbeat:session:ID:lines   list: the server lines sent that the
                                 client has not counted, oldest first, each
                                 a flag byte (N, T, B: how a WebSocket client
                                 gets it) and the line
    heartbeat:sessions:NODE      set: the sessions NODE holds

A node writes a session only while it is its owner at the epoch it knows:
a node that lost the session to another (a client that resumed
elsewhere) has its writes refused, and learns it.  A session that ends
keeps its hash, with the reason, for an hour, so that its client is told
why.  When its owner dies or leaves, the cluster's scripts give each of
its sessions its window (L{heartbeat._cluster.scripts}).
"""

# Ends a session for a reason: it keeps only its reason, for an hour.
_TOMBSTONE = """
local function tombstone(prefix, sid, key, reason, remember)
  local owner = redis.call('HGET', key, 'owner') or ''
  local node = string.match(owner, '^([^#]*)#')
  if node then redis.call('SREM', prefix .. 'sessions:' .. node, sid) end
  redis.call('HSET', key, 'state', reason)
  redis.call('DEL', key .. ':lines')
  redis.call('EXPIRE', key, remember)
end
"""

# ARGV: prefix, owner, node, remember, then one group per session: id,
# epoch, received, acked, sent before (the lines the node had recorded),
# n, window, name ("" for none), then n lines (those after "sent before").
# Records each session's counts and new lines, creating it at epoch 1.
# Returns, for each session, 1, or 0 when this node no longer owns it.
COMMIT = """
local prefix, owner, node = ARGV[1], ARGV[2], ARGV[3]
local results = {}
local i = 5
while i <= #ARGV do
  local sid, epoch = ARGV[i], ARGV[i + 1]
  local received, acked = ARGV[i + 2], tonumber(ARGV[i + 3])
  local before, n = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local first = i + 8
  local key = prefix .. 'session:' .. sid
  local lines = key .. ':lines'
  local f = redis.call('HMGET', key, 'state', 'owner', 'epoch')
  local ok = 1
  if not f[1] then
    if epoch == '1' then
      redis.call('HSET', key, 'state', 'live', 'owner', owner, 'epoch', '1',
        'window', ARGV[i + 6], 'name', ARGV[i + 7], 'received', '0', 'sent', '0',
        'acked', '0')
      redis.call('SADD', prefix .. 'sessions:' .. node, sid)
    else
      ok = 0
    end
  elseif f[1] ~= 'live' or f[2] ~= owner or f[3] ~= epoch then
    ok = 0
  end
  if ok == 1 then
    local stored = tonumber(redis.call('HGET', key, 'sent'))
    local was = tonumber(redis.call('HGET', key, 'acked'))
    if acked > was then
      redis.call('LTRIM', lines, acked - was, -1)
      redis.call('HSET', key, 'acked', acked)
    end
    for j = math.max(1, stored - before + 1), n do
      redis.call('RPUSH', lines, ARGV[first + j - 1])
    end
    if before + n > stored then
      redis.call('HSET', key, 'sent', before + n)
    end
    redis.call('HSET', key, 'received', received)
  end
  results[#results + 1] = ok
  i = first + n
end
return results
"""

# ARGV: prefix, id, owner, node, name ("" for none), the client's count,
# node channel prefix, the epoch this node knows ("" if it does not hold
# the session), remember.  Returns {"here"} when this node holds the
# session as it knows it; {"taken", epoch, received, sent, lines} when it
# takes it over (from another node, or from none), telling the previous
# owner on its channel ("T" ID SP EPOCH); or {reason} when it cannot be
# resumed: unknown, expired, mismatch, or the reason it ended.
TAKE = _TOMBSTONE + """
local prefix, sid, owner = ARGV[1], ARGV[2], ARGV[3]
local key = prefix .. 'session:' .. sid
local lines = key .. ':lines'
local f = redis.call('HMGET', key, 'state', 'owner', 'epoch', 'name', 'received',
  'sent', 'acked', 'expires')
if not f[1] then return {'unknown'} end
if f[1] ~= 'live' then return {f[1]} end
if (f[4] or '') ~= ARGV[5] then return {'unknown'} end
if f[8] then
  local t = redis.call('TIME')
  if tonumber(t[1]) + tonumber(t[2]) / 1000000 >= tonumber(f[8]) then
    tombstone(prefix, sid, key, 'expired', ARGV[9])
    return {'expired'}
  end
end
if f[2] == owner and f[3] == ARGV[8] then return {'here'} end
local peer, acked, sent = tonumber(ARGV[6]), tonumber(f[7]), tonumber(f[6])
if peer < acked or peer > sent then
  tombstone(prefix, sid, key, 'mismatch', ARGV[9])
  return {'mismatch'}
end
local epoch = tonumber(f[3]) + 1
redis.call('LTRIM', lines, peer - acked, -1)
redis.call('HSET', key, 'owner', owner, 'epoch', epoch, 'acked', peer)
redis.call('HDEL', key, 'expires')
redis.call('PERSIST', key)
redis.call('PERSIST', lines)
local previous = string.match(f[2], '^([^#]*)#')
if previous then
  redis.call('SREM', prefix .. 'sessions:' .. previous, sid)
  if f[2] ~= owner then
    redis.call('PUBLISH', ARGV[7] .. previous, 'T' .. sid .. ' ' .. epoch)
  end
end
redis.call('SADD', prefix .. 'sessions:' .. ARGV[4], sid)
return {'taken', tostring(epoch), f[5], f[6], redis.call('LRANGE', lines, 0, -1)}
"""

# ARGV: prefix, id, owner, epoch, reason, remember.  Ends the session if
# this node owns it at that epoch.  Returns 1 if it did.
END = _TOMBSTONE + """
local key = ARGV[1] .. 'session:' .. ARGV[2]
local f = redis.call('HMGET', key, 'owner', 'epoch')
if f[1] ~= ARGV[3] or f[2] ~= ARGV[4] then return 0 end
tombstone(ARGV[1], ARGV[2], key, ARGV[5], ARGV[6])
return 1
"""
