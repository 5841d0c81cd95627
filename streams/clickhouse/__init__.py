"""ClickHouse visibility: one client for the embedded engine (chdb) and servers, schema
migrations, row mapping, a batching sink with backpressure, and a read-only query path.
"""
