-- The ao-cu Lua test process: an aos-shaped AO process with one handler per `Action` tag.
--
-- process.handle(msg, env) returns an aos-like result table
--   { Output = ..., Messages = {...}, Spawns = {...}, Assignments = {...} }
-- or raises a Lua error (the global `handle` in main.lua turns that into {ok = false, response = err}).
-- State kept across messages lives in the global `State` (counters, hoarded memory, outbox reference).
-- Every handler that fails on purpose (Error, Fail, Recurse) first changes State, so a host that does not
-- roll back memory after an error shows it in later Count outputs.

local json = require('json')

local process = { _version = '1.0.0' }

State = State or {
  Count = 0,      -- Count handler
  Cron = 0,       -- Cron ticks seen
  Reference = 0,  -- outbox reference counter (aos-style)
  Hoard = {},     -- memory kept alive by Grow
  HoardBytes = 0,
  Seen = 0,       -- messages handled successfully or not
  Id = nil,       -- env.Process.Id, set on the first message
  Owner = nil,    -- process owner (env.Process.Owner)
}

-- Print buffer: the global print collects lines for the current message (aos style) instead of writing
-- to stdout; Eval returns them as its Output.
local prints = {}
print = function(...)
  local n = select('#', ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  prints[#prints + 1] = table.concat(parts, '\t')
end

local function tag(msg, name)
  for _, t in ipairs(msg.Tags or {}) do
    if t.name == name then return t.value end
  end
  return nil
end

local function tag_number(msg, name, default)
  local v = tag(msg, name)
  if v == nil then return default end
  local n = math.tointeger(tonumber(v))
  if n == nil or n < 0 then error('tag ' .. name .. ' must be a non-negative integer, got ' .. tostring(v)) end
  return n
end

local function result(output)
  return { Output = output, Messages = {}, Spawns = {}, Assignments = {} }
end

local function next_reference()
  State.Reference = State.Reference + 1
  return State.Reference
end

local handlers = {}

-- Echo: Output = Data.
function handlers.Echo(msg)
  return result(msg.Data)
end

-- Count: increments a counter kept in Lua state; Output is the number (the CU turns it into a string).
function handlers.Count(msg)
  State.Count = State.Count + 1
  return result(State.Count)
end

-- Error: changes state, then raises error("boom") => ok = false, response = "process:LINE: boom".
-- With tag Kind=table the error value is a table, which the loader throws as an object.
function handlers.Error(msg)
  State.Count = State.Count + 1000
  if tag(msg, 'Kind') == 'table' then
    error({ code = 42, message = 'boom' })
  end
  error('boom')
end

-- Fail: changes state, then returns a response with an Error field (ok = true, the CU treats it as an error).
function handlers.Fail(msg)
  State.Count = State.Count + 1000
  return { Error = 'failed on purpose: ' .. tostring(msg.Data), Output = 'partial output' }
end

-- Send: one outbox message, shaped like aos's ao.send.
function handlers.Send(msg)
  local ref = next_reference()
  local res = result('sent ' .. ref)
  res.Messages[1] = {
    Target = tag(msg, 'Recipient') or msg.From,
    Data = msg.Data,
    Anchor = string.format('%032d', ref),
    Tags = {
      { name = 'Data-Protocol', value = 'ao' },
      { name = 'Variant', value = 'ao.TN.1' },
      { name = 'Type', value = 'Message' },
      { name = 'Reference', value = tostring(ref) },
      { name = 'Action', value = tag(msg, 'Reply-Action') or 'Reply' },
      { name = 'X-Origin', value = tostring(msg.Id) },
    },
  }
  return res
end

-- Spawn: one spawn, shaped like aos's ao.spawn.
function handlers.Spawn(msg, env)
  local ref = next_reference()
  local module = tag(msg, 'Spawn-Module') or (env.Module and env.Module.Id) or 'unknown'
  local res = result('spawned ' .. ref)
  res.Spawns[1] = {
    Data = (msg.Data ~= nil and msg.Data ~= '') and msg.Data or 'NODATA',
    Anchor = string.format('%032d', ref),
    Tags = {
      { name = 'Data-Protocol', value = 'ao' },
      { name = 'Variant', value = 'ao.TN.1' },
      { name = 'Type', value = 'Process' },
      { name = 'From-Process', value = tostring(State.Id) },
      { name = 'From-Module', value = tostring(env.Module and env.Module.Id) },
      { name = 'Module', value = module },
      { name = 'Reference', value = tostring(ref) },
    },
  }
  return res
end

-- Assign: Assignments = { { Processes = [comma-separated tag Processes], Message = tag Message } }.
function handlers.Assign(msg)
  local processes = {}
  for pid in string.gmatch(tag(msg, 'Processes') or '', '[^,%s]+') do
    processes[#processes + 1] = pid
  end
  local res = result('assigned ' .. #processes)
  res.Assignments[1] = { Processes = processes, Message = tag(msg, 'Message') or msg.Id }
  return res
end

-- Time: what the host's clock shims give Lua (all must be deterministic).
function handlers.Time(msg)
  return result({
    time = os.time(),
    clock = os.clock(),
    date = os.date('!%Y-%m-%d %H:%M:%S'),
    localdate = os.date('%Y-%m-%d %H:%M:%S'),
    difftime = os.difftime(os.time(), 0),
    mktime = os.time({ year = 2024, month = 1, day = 1, hour = 0 }),
  })
end

-- Random: math.random (libc rand, state in linear memory) before and after math.randomseed.
function handlers.Random(msg)
  local before = { math.random(), math.random(1, 100), math.random(6) }
  local seed = tag_number(msg, 'Seed', 42)
  math.randomseed(seed)
  local first = { math.random(1, 1000000), math.random(1, 1000000) }
  math.randomseed(seed)
  local again = { math.random(1, 1000000), math.random(1, 1000000) }
  return result({
    before = before,
    seeded = first,
    reseeded_equal = (first[1] == again[1] and first[2] == again[2]),
  })
end

-- Pcall: errors raised and caught inside Lua (setjmp/longjmp on the host) do not fail the message.
function handlers.Pcall(msg)
  local ok1, e1 = pcall(error, 'inner')
  local ok2, e2 = pcall(function() local t = nil; return t.x end)
  local ok3, e3 = pcall(error, { reason = 'table error' })
  local ok4, e4 = pcall(function()
    local ok, e = pcall(error, 'nested')
    error('outer after ' .. tostring(e), 0)
  end)
  local ok5, v5 = pcall(function() return 'no error' end)
  return result(string.format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s',
    tostring(ok1), tostring(e1), tostring(ok2), tostring(e2), tostring(ok3), tostring(e3.reason),
    tostring(ok4), tostring(e4), tostring(ok5), tostring(v5)))
end

-- Grow: allocate and keep MB megabytes (tag MB, default 1) of distinct Lua strings in State.Hoard.
function handlers.Grow(msg)
  local mb = tag_number(msg, 'MB', 1)
  local chunk = 1024 * 1024
  for i = 1, mb do
    local n = #State.Hoard + 1
    -- distinct contents so nothing is shared: a 16-byte header, then a repeated letter
    State.Hoard[n] = string.format('%016d', n) .. string.rep(string.char(65 + n % 26), chunk - 16)
    State.HoardBytes = State.HoardBytes + chunk
    -- free the temporary buffers now: the heap grows by about what is kept, not by the garbage
    collectgarbage()
  end
  return result(string.format('hoard %d MB', State.HoardBytes // chunk))
end

-- Loop: never returns (only a compute limit on a metered module stops it).
function handlers.Loop(msg)
  local i = 0
  while true do i = i + 1 end
end

-- Recurse: unbounded non-tail recursion => Lua "stack overflow" error (Kind=c: through C calls).
function handlers.Recurse(msg)
  State.Count = State.Count + 1000
  if tag(msg, 'Kind') == 'c' then
    -- string.gsub calls back into Lua from C at every level => "C stack overflow"
    local cdeep
    cdeep = function(s) return (string.gsub(s, '.', function(c) return cdeep(c) end)) end
    return result(cdeep('x'))
  end
  local function deep(n) return 1 + deep(n + 1) end
  return result(deep(1))
end

-- Big: an Output of Size bytes (tag Size, default 2 MiB).
function handlers.Big(msg)
  local size = tag_number(msg, 'Size', 2 * 1024 * 1024)
  local pattern = 'ao-cu big output 0123456789 '
  local s = string.rep(pattern, size // #pattern + 1)
  return result(string.sub(s, 1, size))
end

-- Eval: run msg.Data as Lua (like aos Eval); Output = printed lines, then the returned value if any.
function handlers.Eval(msg)
  local chunk, err = load(msg.Data or '', 'eval', 't', _G)
  if not chunk then error('eval: ' .. err, 0) end
  local value = chunk()
  local out = table.concat(prints, '\n')
  if value ~= nil then
    local shown = type(value) == 'table' and json.encode(value) or tostring(value)
    out = out == '' and shown or (out .. '\n' .. shown)
  end
  return result(out)
end

-- Memory: the Lua heap size in KiB (a float) and the hoard size.
function handlers.Memory(msg)
  return result({ kb = collectgarbage('count'), hoard_mb = State.HoardBytes // (1024 * 1024) })
end

-- File: write Data to a file under /tmp and read it back (Mode=write / read for one half only).
function handlers.File(msg)
  local path = '/tmp/' .. (tag(msg, 'Name') or 'ao-cu-test.txt'):gsub('[^%w%.%-_]', '_')
  local mode = tag(msg, 'Mode') or 'roundtrip'
  if mode == 'write' or mode == 'roundtrip' then
    local f, err = io.open(path, 'w')
    if not f then error('open for write: ' .. tostring(err), 0) end
    f:write(msg.Data or '')
    f:close()
  end
  if mode == 'read' or mode == 'roundtrip' then
    local f, err = io.open(path, 'r')
    if not f then return result('read failed: ' .. tostring(err)) end
    local content = f:read('a')
    f:close()
    return result(content)
  end
  return result('wrote ' .. #(msg.Data or '') .. ' bytes')
end

-- Cron: counts cron ticks (cron messages have no Id).
function handlers.Cron(msg)
  State.Cron = State.Cron + 1
  return result('cron ' .. State.Cron .. ' at ' .. tostring(msg.Timestamp))
end

-- Info: a summary of the process state and of the message as the process saw it.
function handlers.Info(msg, env)
  return result({
    id = State.Id,
    owner = State.Owner,
    count = State.Count,
    seen = State.Seen,
    from = msg.From,
    readonly = msg['Read-Only'],
    cron = msg.Cron,
    timestamp = msg.Timestamp,
    height = msg['Block-Height'],
    tags = #(msg.Tags or {}),
    version = _VERSION,
  })
end

function process.handle(msg, env)
  prints = {}
  State.Seen = State.Seen + 1
  if State.Id == nil and env and env.Process then
    State.Id = env.Process.Id
    State.Owner = env.Process.Owner
  end
  local action = tag(msg, 'Action')
  local handler = action and handlers[action]
  if not handler then
    return result('no handler for action ' .. tostring(action))
  end
  return handler(msg, env)
end

return process
