-- Parcels past their promise and not delivered or returned, latest first.
SELECT *
FROM parcels_late_now
ORDER BY hours_late DESC, parcel_id
LIMIT 200
