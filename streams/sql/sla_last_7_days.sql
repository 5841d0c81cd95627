-- SLA per lane and service over the 7 days of deliveries up to the as-of time (each row
-- states the window used), worst on-time share first.
-- param as_of: RFC 3339 time, epoch millis or "now" (default: stream time, the latest event time in the data)
-- note if empty: no deliveries in the 7 days up to {as_of}; --param as_of=TIME looks at an earlier week
SELECT
    fromUnixTimestamp64Milli({as_of:Int64}, 'UTC') - INTERVAL 7 DAY AS window_start,
    fromUnixTimestamp64Milli({as_of:Int64}, 'UTC') AS as_of,
    origin_country,
    destination_country,
    service,
    count() AS delivered,
    countIf(on_time) AS on_time_count,
    round(countIf(on_time) / count(), 4) AS on_time_share,
    round(quantileExactInclusive(0.5)(transit_hours), 2) AS p50_transit_hours,
    round(quantileExactInclusive(0.9)(transit_hours), 2) AS p90_transit_hours
FROM deliveries
WHERE delivered_at > fromUnixTimestamp64Milli({as_of:Int64}, 'UTC') - INTERVAL 7 DAY
    AND delivered_at <= fromUnixTimestamp64Milli({as_of:Int64}, 'UTC')
GROUP BY origin_country, destination_country, service
ORDER BY on_time_share, delivered DESC, origin_country, destination_country, service
