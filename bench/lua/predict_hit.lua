-- POST /api/v1/predict with the same features every time (cache hits once warmed up).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(dir .. "common.lua")

local body = '{"model_name":"' .. bench.model .. '","use_cache":true,"features":' .. bench.fixed_row() .. "}"

setup = bench.setup
done = bench.done

function init(_args)
  wrk.method = "POST"
  wrk.path = "/api/v1/predict"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
