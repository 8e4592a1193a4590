-- wrk script for bench/admin.py: create consumers, each followed by its key-auth credential,
-- through the Admin API on keep-alive connections.
-- Usage: wrk -t T -c T -d 10s -s admin-create.lua URL -- RUN
-- Use one connection per thread (-c equal to -t): after each consumer is created, the next
-- request on the connection creates its key-auth credential. Names are c<RUN>-<thread>-<n>.
-- Non-201 answers are counted; done() prints one RESULT line.
local next_tid = 0
local threads = {}

function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
    table.insert(threads, thread)
end

function init(args)
    run = args[1] or "0"
    issued = 0
    created = 0
    errors = 0
end

local json = { ["Content-Type"] = "application/json" }

function request()
    if pending then
        local name = pending
        pending = nil
        return wrk.format("POST", "/consumers/" .. name .. "/key-auth", json,
            '{"key":"key-' .. name .. '-0123456789abcdef"}')
    end
    issued = issued + 1
    local name = "c" .. run .. "-" .. tid .. "-" .. issued
    return wrk.format("POST", "/consumers", json, '{"username":"' .. name .. '"}')
end

function response(status, headers, body)
    local username = body:match('"username":"([^"]+)"')
    if status == 201 and username then
        pending = username
    end
    if status == 201 then
        created = created + 1
    else
        errors = errors + 1
        if errors <= 3 then
            io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
        end
    end
end

function done(summary, latency, requests)
    local c, e = 0, 0
    for _, t in ipairs(threads) do
        c = c + (t:get("created") or 0)
        e = e + (t:get("errors") or 0)
    end
    io.write(string.format("RESULT created=%d errors=%d duration_us=%d\n", c, e, summary.duration))
end
