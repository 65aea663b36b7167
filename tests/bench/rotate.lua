-- wrk script for make bench (tests/bench/load.py: run_wrk). Arguments after `--`: the body files, sent in turn
-- (request k carries body k mod n), each a JSON POST. At the end one line of JSON on stdout: what run_wrk reads.
local requests = {}
local next_index = 0

function init(args)
    for _, path in ipairs(args) do
        local file = assert(io.open(path, "rb"))
        local body = file:read("*a")
        file:close()
        requests[#requests + 1] = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
    end
    assert(#requests > 0, "no body files given after --")
end

function request()
    next_index = next_index % #requests + 1
    return requests[next_index]
end

function done(summary, latency, _)
    local errors = summary.errors
    local percentiles = {}
    for _, p in ipairs({ 10, 25, 50, 75, 90, 95, 99 }) do
        percentiles[#percentiles + 1] = string.format('"%d": %d', p, latency:percentile(p))
    end
    io.write(string.format(
        '{"wrk": 1, "duration_us": %d, "responses": %d, "non_2xx_3xx": %d, "connect": %d, "read": %d, '
            .. '"write": %d, "timeout": %d, "percentiles_us": {%s}}\n',
        summary.duration, summary.requests, errors.status, errors.connect, errors.read, errors.write,
        errors.timeout, table.concat(percentiles, ", ")))
end
