-- wrk script: POST the JSON body in BODY_FILE (with the bearer token in TOKEN) and count the
-- answers: 503s, 503s carrying Retry-After, and anything else.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) shed, retry, other = 0, 0, 0 end
function response(status, headers, body)
  if status == 503 then
    shed = shed + 1
    if (headers["retry-after"] or headers["Retry-After"]) == "1" then retry = retry + 1 end
  else
    other = other + 1
  end
end
function done(summary, latency, requests)
  local s, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    s, r, o = s + t:get("shed"), r + t:get("retry"), o + t:get("other")
  end
  io.write(string.format("shed %d retry_after %d other %d\n", s, r, o))
end
