-- wrk script: POST /v1/events with SORACOM-style events (about 450 bytes
-- each), BENCH_BATCH per request (1: one event object; more: an array), every
-- event with a new id so the router never takes one for a redelivery.
-- BENCH_EVENTS=traffic sends TrafficUsage events instead (1 MiB each, 100,000
-- SIMs in 10 groups), which traffic handlers count.
local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local traffic = os.getenv("BENCH_EVENTS") == "traffic"
local made = 0

function setup(thread)
  made = made + 1
  thread:set("tid", made)
end

function init(args)
  n = 0
  headers = { ["Content-Type"] = "application/json" }
end

local function event(i)
  if traffic then
    return string.format(
      '{"id":"%s-%d-%d","eventType":"TrafficUsage","simId":"89811000%011d",' ..
      '"imsi":"44010%010d","operatorId":"OP0012345678","timestamp":1764590000000,' ..
      '"groupId":"group-%d","payload":{"bytes":1048576,"uplinkBytes":262144,' ..
      '"downlinkBytes":786432,"tags":{"name":"device-%d","site":"tokyo-3"},' ..
      '"note":"bench event padded to a realistic size"}}',
      run, tid, i, i % 100000, i % 100000, i % 10, i % 1000)
  end
  return string.format(
    '{"id":"%s-%d-%d","eventType":"SimSubscriptionStatus","simId":"89811000%011d",' ..
    '"imsi":"44010%010d","operatorId":"OP0012345678","timestamp":1764590000000,' ..
    '"groupId":"group-3","payload":{"otaStatus":"started","subscription":"planX3",' ..
    '"primaryImsi":"440100000000001","iccid":"8981100000000000001",' ..
    '"tags":{"name":"device-%d","site":"tokyo-3"},"note":"bench event padded to a realistic size"}}',
    run, tid, i, i % 100000, i % 100000, i % 1000)
end

function request()
  local body
  if batch == 1 then
    n = n + 1
    body = event(n)
  else
    local items = {}
    for _ = 1, batch do
      n = n + 1
      items[#items + 1] = event(n)
    end
    body = "[" .. table.concat(items, ",") .. "]"
  end
  return wrk.format("POST", "/v1/events", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d errors=%d non2xx=%d p50_us=%d p99_us=%d seconds=%.3f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), summary.duration / 1e6))
end
