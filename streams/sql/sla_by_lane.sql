-- SLA per lane and service over every delivery up to the as-of time, busiest lanes first
-- (the demo's "SLA by lane and service" table); each parcel against its own promise.
-- param as_of: RFC 3339 time, epoch millis or "now" (default: stream time, the latest event time in the data)
SELECT
    fromUnixTimestamp64Milli({as_of:Int64}, 'UTC') AS as_of,
    concat(origin_country, '->', destination_country) AS lane,
    service,
    count() AS delivered,
    round(countIf(on_time) / count(), 4) AS on_time_share,
    round(median(dateDiff('millisecond', registered_at, promised_at) / 3600000.0), 2) AS promise_hours,
    round(quantileExactInclusive(0.5)(transit_hours), 2) AS p50_transit_hours,
    round(quantileExactInclusive(0.9)(transit_hours), 2) AS p90_transit_hours
FROM deliveries
WHERE delivered_at <= fromUnixTimestamp64Milli({as_of:Int64}, 'UTC')
GROUP BY lane, service
ORDER BY delivered DESC, lane, service
