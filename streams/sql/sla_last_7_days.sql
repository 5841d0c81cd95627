-- SLA per lane and service over the last 7 days of deliveries in the data (ending at
-- the latest delivery day, so simulated history works too).
SELECT
    origin_country,
    destination_country,
    service,
    count() AS delivered,
    countIf(on_time) AS on_time_count,
    round(countIf(on_time) / count(), 4) AS on_time_share,
    round(quantileExactInclusive(0.5)(transit_hours), 2) AS p50_transit_hours,
    round(quantileExactInclusive(0.9)(transit_hours), 2) AS p90_transit_hours
FROM deliveries
WHERE day > (SELECT max(day) FROM deliveries) - 7
GROUP BY origin_country, destination_country, service
ORDER BY on_time_share, delivered DESC
