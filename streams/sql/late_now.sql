-- Parcels past their promise and not delivered or returned as of a time, latest first; each
-- row states the as-of time used.
-- param as_of: RFC 3339 time, epoch millis or "now" (default: stream time, the latest event time in the data)
SELECT * REPLACE (round(hours_late, 2) AS hours_late)
FROM parcels_late_at(as_of = fromUnixTimestamp64Milli({as_of:Int64}, 'UTC'))
ORDER BY hours_late DESC, parcel_id
LIMIT 200
