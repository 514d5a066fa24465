-- JSON encoder/decoder for the ao-cu Lua test process (Lua 5.3).
--
-- encode(value): nil -> null, booleans, integers (%d), finite floats (%.17g, so JavaScript's JSON.parse
-- reads back the same double), strings (escaped; bytes >= 0x80 pass through unchanged), tables. A table
-- whose keys are exactly 1..n is an array; an empty table is `[]`; any other table is an object whose
-- keys are converted with tostring and written in sorted order, so the text never depends on the Lua
-- string-hash seed. NaN/inf, functions, userdata and cyclic tables raise an error.
--
-- decode(text): objects -> tables, arrays -> sequences, null -> nil (json.null is never produced),
-- integers without fraction/exponent that fit in 64 bits -> Lua integers, other numbers -> floats,
-- \uXXXX escapes (with surrogate pairs) -> UTF-8. Malformed input raises "json: ... at byte N".

local json = {}

local byte, char, find, format, sub = string.byte, string.char, string.find, string.format, string.sub
local concat, sort = table.concat, table.sort
local mtype = math.type

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function escape_char(c)
  return escapes[c] or format('\\u%04x', byte(c))
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', escape_char) .. '"'
end

local function encode_number(n)
  if mtype(n) == 'integer' then
    return format('%d', n)
  end
  if n ~= n or n == math.huge or n == -math.huge then
    error('json: cannot encode non-finite number ' .. tostring(n), 0)
  end
  return format('%.17g', n)
end

-- Returns n when t's keys are exactly 1..n (n may be 0), nil otherwise.
local function array_length(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return nil end
  end
  return n
end

local encode_value

local function encode_table(t, out, seen)
  if seen[t] then error('json: cannot encode a cyclic table', 0) end
  seen[t] = true
  local n = array_length(t)
  if n then
    out[#out + 1] = '['
    for i = 1, n do
      if i > 1 then out[#out + 1] = ',' end
      encode_value(t[i], out, seen)
    end
    out[#out + 1] = ']'
  else
    local keys = {}
    for k in pairs(t) do
      local kt = type(k)
      if kt ~= 'string' and kt ~= 'number' then
        error('json: cannot encode a table key of type ' .. kt, 0)
      end
      keys[#keys + 1] = tostring(k)
    end
    sort(keys)
    out[#out + 1] = '{'
    for i, key in ipairs(keys) do
      if i > 1 then out[#out + 1] = ',' end
      local v = t[key]
      if v == nil then v = t[tonumber(key)] end
      out[#out + 1] = encode_string(key)
      out[#out + 1] = ':'
      encode_value(v, out, seen)
    end
    out[#out + 1] = '}'
  end
  seen[t] = nil
end

encode_value = function(v, out, seen)
  local vt = type(v)
  if vt == 'nil' then
    out[#out + 1] = 'null'
  elseif vt == 'boolean' then
    out[#out + 1] = v and 'true' or 'false'
  elseif vt == 'number' then
    out[#out + 1] = encode_number(v)
  elseif vt == 'string' then
    out[#out + 1] = encode_string(v)
  elseif vt == 'table' then
    encode_table(v, out, seen)
  else
    error('json: cannot encode a value of type ' .. vt, 0)
  end
end

function json.encode(value)
  local out = {}
  encode_value(value, out, {})
  return concat(out)
end

-- Decoder --------------------------------------------------------------------------------------------

local function decode_error(text, pos, what)
  error(format('json: %s at byte %d', what, pos), 0)
end

local function skip_space(text, pos)
  local _, e = find(text, '^[ \t\r\n]*', pos)
  return e + 1
end

local function utf8_encode(cp)
  return utf8.char(cp)
end

local simple_escapes = {
  [byte('"')] = '"', [byte('\\')] = '\\', [byte('/')] = '/', [byte('b')] = '\b',
  [byte('f')] = '\f', [byte('n')] = '\n', [byte('r')] = '\r', [byte('t')] = '\t',
}

local function decode_string(text, pos)
  -- text[pos] is the opening quote
  local parts = {}
  local i = pos + 1
  while true do
    local s, e = find(text, '^[^"\\\0-\31]+', i)
    if s then
      parts[#parts + 1] = sub(text, s, e)
      i = e + 1
    end
    local c = byte(text, i)
    if c == nil then
      decode_error(text, i, 'unterminated string')
    elseif c == 34 then -- "
      return concat(parts), i + 1
    elseif c == 92 then -- backslash
      local esc = byte(text, i + 1)
      if esc == 117 then -- u
        local hex = sub(text, i + 2, i + 5)
        if not find(hex, '^%x%x%x%x$') then decode_error(text, i, 'bad \\u escape') end
        local cp = tonumber(hex, 16)
        i = i + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = sub(text, i, i + 5)
          if find(lo, '^\\u[dD][c-fC-F]%x%x$') then
            cp = 0x10000 + ((cp - 0xD800) << 10) + (tonumber(sub(lo, 3), 16) - 0xDC00)
            i = i + 6
          end
        end
        parts[#parts + 1] = utf8_encode(cp)
      else
        local rep = esc and simple_escapes[esc]
        if not rep then decode_error(text, i, 'bad escape') end
        parts[#parts + 1] = rep
        i = i + 2
      end
    else
      decode_error(text, i, 'control character in string')
    end
  end
end

local function decode_number(text, pos)
  local s, e = find(text, '^-?%d+', pos)
  if not s then decode_error(text, pos, 'bad number') end
  local is_float = false
  local fs, fe = find(text, '^%.%d+', e + 1)
  if fs then e = fe; is_float = true end
  local es, ee = find(text, '^[eE][-+]?%d+', e + 1)
  if es then e = ee; is_float = true end
  local literal = sub(text, pos, e)
  local n
  if not is_float then n = math.tointeger(tonumber(literal)) end
  if n == nil then n = tonumber(literal) + 0.0 end
  return n, e + 1
end

local decode_value

local function decode_array(text, pos)
  local result, n = {}, 0
  pos = skip_space(text, pos + 1)
  if byte(text, pos) == 93 then return result, pos + 1 end -- ]
  while true do
    local v
    v, pos = decode_value(text, pos)
    n = n + 1
    result[n] = v
    pos = skip_space(text, pos)
    local c = byte(text, pos)
    if c == 93 then return result, pos + 1 end
    if c ~= 44 then decode_error(text, pos, "expected ',' or ']'") end
    pos = skip_space(text, pos + 1)
  end
end

local function decode_object(text, pos)
  local result = {}
  pos = skip_space(text, pos + 1)
  if byte(text, pos) == 125 then return result, pos + 1 end -- }
  while true do
    if byte(text, pos) ~= 34 then decode_error(text, pos, 'expected a string key') end
    local key
    key, pos = decode_string(text, pos)
    pos = skip_space(text, pos)
    if byte(text, pos) ~= 58 then decode_error(text, pos, "expected ':'") end
    local v
    v, pos = decode_value(text, skip_space(text, pos + 1))
    result[key] = v
    pos = skip_space(text, pos)
    local c = byte(text, pos)
    if c == 125 then return result, pos + 1 end
    if c ~= 44 then decode_error(text, pos, "expected ',' or '}'") end
    pos = skip_space(text, pos + 1)
  end
end

local literals = { t = { 'true', true }, f = { 'false', false }, n = { 'null', nil } }

decode_value = function(text, pos)
  pos = skip_space(text, pos)
  local c = sub(text, pos, pos)
  if c == '{' then return decode_object(text, pos) end
  if c == '[' then return decode_array(text, pos) end
  if c == '"' then return decode_string(text, pos) end
  if c == '-' or find(c, '^%d$') then return decode_number(text, pos) end
  local lit = literals[c]
  if lit and sub(text, pos, pos + #lit[1] - 1) == lit[1] then
    return lit[2], pos + #lit[1]
  end
  decode_error(text, pos, 'unexpected character')
end

function json.decode(text)
  if type(text) ~= 'string' then error('json: decode expects a string, got ' .. type(text), 0) end
  local value, pos = decode_value(text, 1)
  pos = skip_space(text, pos)
  if pos <= #text then decode_error(text, pos, 'trailing garbage') end
  return value
end

return json
