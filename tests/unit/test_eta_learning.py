"""The lane-statistics learner reads back its own writes, not a global table's lagging copy."""

from __future__ import annotations

from projections import eta
from streams.eta_stream import EtaWiring


class LaggingTable(dict):
    """A global table whose reads lag its writes (it applies its changelog later)."""

    def get(self, key, default=None):
        return default


def _learner(table: dict) -> EtaWiring:
    learner = EtaWiring.__new__(EtaWiring)  # the flush alone: no Faust app needed
    learner.table = table
    learner.pending = {}
    learner.pending_count = 0
    learner.last_flush = 0.0
    learner.written = {}
    learner.unmatched_retractions = 0
    return learner


def test_a_retraction_after_an_earlier_flush_finds_what_that_flush_added():
    lane = eta.Lane("CN", "Hangzhou", "FR", "STANDARD")
    key = eta.encode_level_key(eta.GLOBAL_KEY).encode()
    seen = [eta.Observation(lane, "OUT_FOR_DELIVERY", 3_600_000)]
    table = LaggingTable()
    learner = _learner(table)
    learner.pending = {key: (list(seen), [])}
    learner.flush()
    learner.pending = {key: ([], list(seen))}  # the parcel's delivery was voided
    learner.flush()
    assert learner.unmatched_retractions == 0
    stats = eta.from_bytes(table[key])
    sketch = stats.sketches.get((eta.GLOBAL_KEY, "OUT_FOR_DELIVERY"))
    assert sketch is None or sketch.count == 0


def test_a_retraction_never_added_is_counted_and_the_rest_of_the_batch_kept():
    lane = eta.Lane("CN", "Hangzhou", "FR", "STANDARD")
    key = eta.encode_level_key(eta.GLOBAL_KEY).encode()
    table: dict = {}
    learner = _learner(table)
    learner.pending = {key: ([], [eta.Observation(lane, "OUT_FOR_DELIVERY", 60_000)])}
    learner.flush()  # no crash
    assert learner.unmatched_retractions == 1
    assert key in table


def test_a_batch_of_observation_records_is_learned_at_once_and_a_tick_flushes_it():
    import orjson

    from projections.core import Record
    from streams.eta_stream import TICK

    lane = eta.Lane("CN", "Hangzhou", "FR", "STANDARD")
    key = eta.encode_level_key(eta.GLOBAL_KEY)
    facts = [lane.origin_country, lane.origin_city, lane.destination_country, lane.service]
    value = orjson.dumps({"k": key, "s": 1, "l": facts, "o": [["OUT_FOR_DELIVERY", 3_600_000]]})
    table: dict = {}
    learner = _learner(table)
    learner.last_flush = float("inf")  # only the tick may flush here
    learner.learn([Record(b"k", value, 0), Record(b"k", value, 1)])
    assert learner.pending_count == 2 and not table
    learner.learn([Record(b"tick", TICK, 2)])
    sketch = eta.from_bytes(table[key.encode()]).sketches[(eta.GLOBAL_KEY, "OUT_FOR_DELIVERY")]
    assert sketch.count == 2 and not learner.pending
