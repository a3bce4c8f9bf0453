-- wrk script: replays pre-built requests from a file, with fresh messageIds per request.
--
--   wrk -t1 -c64 -d10s -s bench/load.lua URL -- REQUESTS_FILE WRITE_KEY RUN_TAG
--
-- REQUESTS_FILE has one request a line: path <TAB> X-Forwarded-For ("-": none) <TAB>
-- User-Agent <TAB> JSON body (see bench/workload.py). Every "@@@@@@@@@@@@" in a body is
-- replaced by RUN_TAG (4 hex digits) + thread (2) + request counter (6), so no two requests
-- carry the same messageIds. done() prints one line "BENCH-JSON {...}" for bench/run.py.
--
-- The requests are split at the placeholders once, in init(), and joined around the tag
-- per request (one table.concat): a gsub over every body made wrk, not the server, the
-- bottleneck.

local requests, count, position, sent = {}, 0, 0, 0
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_id", #threads)
end

function init(args)
   local file, key = args[1], args[2]
   run_tag = args[3] or "0000"
   for line in io.lines(file) do
      local path, xff, agent, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = { ["Content-Type"] = "application/json", ["X-Write-Key"] = key, ["User-Agent"] = agent }
      if xff ~= "-" then headers["X-Forwarded-For"] = xff end
      count = count + 1
      local parts, from = {}, 1
      local formatted = wrk.format("POST", path, headers, body)
      while true do
         local at = formatted:find("@@@@@@@@@@@@", from, true)
         if not at then break end
         parts[#parts + 1] = formatted:sub(from, at - 1)
         from = at + 12
      end
      parts[#parts + 1] = formatted:sub(from)
      requests[count] = parts
   end
   -- threads start at different places in the file
   position = ((thread_id or 1) - 1) * math.floor(count / 8) % count
end

function request()
   position = position % count + 1
   sent = sent + 1
   local tag = string.format("%s%02x%06x", run_tag, (thread_id or 1) % 256, sent % 16777216)
   return table.concat(requests[position], tag)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
