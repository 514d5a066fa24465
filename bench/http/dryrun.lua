-- wrk: POST /dry-run with a body that differs on every request (so the result cache is not measured).
local pid = os.getenv("PROCESS")
local counter = 0
local thread_id = 0
setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"Owner":"bench","Data":"%d-%d","Tags":[{"name":"Action","value":"Echo"}]}', thread_id, counter)
  return wrk.format("POST", "/dry-run?process-id=" .. pid, { ["Content-Type"] = "application/json" }, body)
end
