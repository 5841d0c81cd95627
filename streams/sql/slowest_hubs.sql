-- Facilities where parcels wait longest (p90 dwell between arrival and departure).
SELECT
    facility_id,
    hub,
    country,
    city,
    visits,
    closed_visits,
    open_visits,
    round(p50_dwell_hours, 2) AS p50_dwell_hours,
    round(p90_dwell_hours, 2) AS p90_dwell_hours,
    round(max_dwell_hours, 2) AS max_dwell_hours
FROM hub_dwell
WHERE closed_visits > 0
ORDER BY p90_dwell_hours DESC, facility_id
LIMIT 20
