"""Carrier simulation and measurement: simulator, benchmarks."""
