-- wrk script: POST /v1/calls with the API key from $OUTDIAL_KEY. Every call goes to a
-- TEST-NET address (RFC 5737) that never answers, so with calls.max_concurrent = 1 the
-- server stores calls but dials only one: the run measures durable creates, not SIP.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("OUTDIAL_KEY")
wrk.body = '{"to":"sip:+15550100@192.0.2.1:5060","url":"http://127.0.0.1:9/app.vxml","vars":{"name":"bench"}}'

-- No response() callback: parsing each answer in Lua would make wrk the bottleneck; wrk's
-- "Non-2xx or 3xx responses" line is the check (run.sh fails the run on it).
done = function(summary, latency, requests)
  io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
end
