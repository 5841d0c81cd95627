-- Where is my parcel: its current state, then its timeline.
-- param parcel_id: the parcel's id
-- if empty: no parcel {parcel_id} in the tracking database (check the id, and --data-dir / --dsn)
SELECT kind, time, what, place, detail
FROM
(
    SELECT
        0 AS rank,
        'state' AS kind,
        last_event_time AS time,
        toString(milestone) AS what,
        ifNull(custodian, '') AS place,
        concat(
            'events=', toString(event_count),
            ' attempts=', toString(attempts),
            if(empty(holds), '', concat(' holds=', arrayStringConcat(holds, ','))),
            if(origin_country IS NULL, ' unregistered',
               concat(' lane=', assumeNotNull(origin_country), '->',
                      ifNull(destination_country, '?'), ' ', ifNull(service, ''))),
            if(promised_at IS NULL, '', concat(' promised=', toString(promised_at))),
            if(delivered_at IS NULL, '', concat(' delivered=', toString(delivered_at))),
            if(eta_p50 IS NULL, '', concat(' eta_p50=', toString(eta_p50))),
            if(eta_p90 IS NULL, '', concat(' eta_p90=', toString(eta_p90))),
            if(on_time_probability IS NULL, '',
               concat(' p_on_time=', toString(round(assumeNotNull(on_time_probability), 2))))
        ) AS detail,
        '' AS event_id
    FROM parcel_state FINAL
    WHERE parcel_id = {parcel_id:String}

    UNION ALL

    SELECT
        1 AS rank,
        'event' AS kind,
        toNullable(event_time) AS time,
        multiIf(
            scan IS NOT NULL, assumeNotNull(scan),
            customs_status IS NOT NULL,
                concat('CUSTOMS ', ifNull(customs_direction, ''), ' ', assumeNotNull(customs_status)),
            to_party IS NOT NULL, concat('HANDED OVER to ', assumeNotNull(to_party)),
            toString(event_type)
        ) AS what,
        arrayStringConcat(
            arrayFilter(x -> x != '', [ifNull(facility_id, ''), ifNull(city, ''), ifNull(country, '')]),
            ' '
        ) AS place,
        concat('source=', toString(source), if(reason IS NULL, '', concat(' reason=', assumeNotNull(reason)))) AS detail,
        event_id
    FROM parcel_events FINAL
    WHERE parcel_id = {parcel_id:String}
)
ORDER BY rank, time, event_id
