-- wrk script for bench/loadtest.py: POST /v1/answer, cycling through a few questions and contexts
-- (written for this project, not taken from SQuAD). done() prints one JSON line for the driver.

local pairs_ = {
  {"Who built the Harbor Point lighthouse?",
   "The Harbor Point lighthouse was built in 1874 by the engineer Miriam Holt. Its lamp burned whale oil " ..
   "until 1902, when a kerosene burner replaced it. The tower is 31 metres tall and its light can be seen " ..
   "from 40 kilometres away on a clear night. Since 1990 it has been run automatically by the coast guard."},
  {"When did the bakery open?",
   "The village bakery opened in March 1931 on the corner of Mill Street. Its founder, Otto Brandt, baked " ..
   "rye bread in a wood-fired oven that is still in use. During the winter of 1947 the bakery fed the whole " ..
   "village for three weeks after snow closed the only road. His granddaughter runs it today."},
  {"How long is the canal?",
   "The canal links the river port with the northern lakes. It is 64 kilometres long, has 23 locks and was " ..
   "dug by hand between 1821 and 1829. Barges carried timber and grain south until the railway arrived in " ..
   "1870, after which traffic fell sharply. Today the towpath is a cycling route."},
  {"What does the committee publish every spring?",
   "Each spring the regional water committee publishes a report on river quality. The report lists the " ..
   "oxygen level, temperature and nitrate content measured at twelve stations along the river, and it " ..
   "compares them with the previous ten years. The committee meets four times a year in the town hall."},
}

local function json_string(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('\n', '\\n') .. '"'
end

-- init(args): `wrk ... -- N` pads each context to N characters with the other paragraphs (a long
-- document whose answer lies in its first paragraph); no argument keeps the single paragraphs.
local bodies = {}
local function build_bodies(context_chars)
  for i, qc in ipairs(pairs_) do
    local context = qc[2]
    local j = i
    while context_chars and #context < context_chars do
      j = j % #pairs_ + 1
      context = context .. "\n\n" .. pairs_[j][2]
    end
    if context_chars then context = context:sub(1, context_chars) end
    bodies[i] = '{"question": ' .. json_string(qc[1]) .. ', "context": ' .. json_string(context) .. '}'
  end
end
build_bodies(nil)

init = function(args)
  if args[1] then build_bodies(tonumber(args[1])) end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/v1/answer", nil, bodies[counter % #bodies + 1])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_ms": {"p50": %.2f, "p90": %.2f, "p99": %.2f, "max": %.2f, "mean": %.2f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
