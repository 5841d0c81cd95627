-- Customs per country and direction: dwell from first SUBMITTED/HELD to RELEASED/REFUSED.
SELECT
    country,
    direction,
    parcels,
    closed_count,
    open_count,
    held_count,
    refused_count,
    round(held_count / parcels, 4) AS held_share,
    round(p50_dwell_hours, 2) AS p50_dwell_hours,
    round(p90_dwell_hours, 2) AS p90_dwell_hours
FROM customs_dwell
ORDER BY p90_dwell_hours DESC, country, direction
