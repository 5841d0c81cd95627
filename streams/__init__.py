"""Thin wiring of the domain to Kafka (Faust), ClickHouse and the command line."""
