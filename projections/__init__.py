"""Pure domain logic: events, the fold, ETA projections. No Kafka, ClickHouse or clock."""
