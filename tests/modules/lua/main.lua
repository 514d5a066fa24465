-- Boot script of the ao-cu Lua test process, run once by main() in handle.c.
-- Defines the global `handle(msgJSON, envJSON)` that the C export `handle` calls for every message:
-- decode both JSON strings, call process.handle(msg, env) under pcall, encode
-- {"ok": <pcall status>, "response": <result or error value>}, run a full GC, return the JSON text.

local json = require('json')
local process = require('process')

function handle(msgJSON, envJSON)
  local msg = json.decode(msgJSON)
  local env = json.decode(envJSON)
  local ok, response = pcall(process.handle, msg, env)
  local encoded_ok, text = pcall(json.encode, { ok = ok, response = response })
  if not encoded_ok then
    -- the response could not be encoded (e.g. a function value): report that as the error
    text = json.encode({ ok = false, response = 'cannot encode response: ' .. tostring(text) })
  end
  response = nil
  collectgarbage()
  return text
end
