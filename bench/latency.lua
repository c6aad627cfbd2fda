-- wrk script for bench/scrape-load.sh (scrape under load) and peer.sh: prints latency
-- percentiles in microseconds, beyond the 50/75/90/99 that `wrk --latency` shows, on one line.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCHLAT requests=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d errors=%d non2xx=%d\n",
        summary.requests, latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
