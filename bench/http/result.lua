-- wrk: GET a random /result path from paths.txt (every computed result, so no single cached answer).
local paths = {}
for line in io.lines(os.getenv("PATHS") or "paths.txt") do
  if #line > 0 then paths[#paths + 1] = line end
end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
