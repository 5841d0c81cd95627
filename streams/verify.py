"""Reconciliation: is every input event accounted for, downstream and in ClickHouse?

Read-only. The reference is the input topics themselves, cut at the worker group's
committed offsets (what the worker promises to have handled, outputs stored) and
folded by the processing core (`streams.replay`). Against it:

- per input partition, the accounting identity: records up to the committed offset =
  applied + duplicates + dead-lettered (by the reference fold), and the dead-letter
  topic holds exactly the records the fold dead-letters (by source offset, so a
  redelivered dead letter is not counted twice and a missing one is named);
- the status topic: the latest record of every parcel carries the reference version
  (or a later one while the worker is ahead of its last commit); no status for a
  parcel the inputs never made visible;
- ClickHouse (`parcel_state FINAL`, `parcel_events FINAL`): the same versions and each
  parcel's effective event count, nothing extra.

A live system is compared at the offsets read when the check starts; what is only
late (the worker or the sink behind) is reported as *behind*, not as a mismatch.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams import avro
from streams.errors import BEHIND
from streams.kafka_io import security_options
from streams.replay import ReplayResult, make_consumer, replay, topic_partitions
from streams.settings import Settings

SAMPLE = 10
"""Parcel ids named per kind of problem (the counts are always complete)."""
PAGE_ROWS = 5_000

Query = Callable[[str, dict[str, str]], dict[str, Any]]
"""(sql, params) -> {"columns", "rows"}: ClickHouse directly or through the sink."""


@dataclass(slots=True)
class PartitionRow:
    topic: str
    partition: int
    end: int
    committed: int
    records: int = 0
    dead_expected: int = 0
    dead_found: int = 0
    dead_missing: list[int] = field(default_factory=list)
    dead_extra: list[int] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return self.end - self.committed


@dataclass(slots=True)
class Finding:
    """One kind of disagreement: how many parcels, and a few of their ids."""

    what: str
    count: int = 0
    sample: list[str] = field(default_factory=list)

    def add(self, parcel_id: str) -> None:
        self.count += 1
        if len(self.sample) < SAMPLE:
            self.sample.append(parcel_id)


@dataclass(slots=True)
class Report:
    partitions: list[PartitionRow]
    events_in: int
    applied: int
    duplicates: int
    dead_lettered: int
    dead_by_reason: dict[str, int]
    dead_letter_topic_by_reason: dict[str, int]
    parcels: int
    statuses: int
    clickhouse_parcels: int | None
    clickhouse_note: str | None
    problems: list[Finding]
    behind: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.behind

    @property
    def exit_code(self) -> int:
        """0: all agree; 1: a mismatch; 11: nothing wrong yet, but something is behind."""
        return 1 if self.problems else BEHIND if self.behind else 0

    def to_json(self) -> dict[str, Any]:
        def finding(f: Finding) -> dict[str, Any]:
            return {"what": f.what, "count": f.count, "sample": f.sample}

        return {
            "ok": self.ok,
            "compared_at": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "end": p.end,
                    "committed": p.committed,
                    "lag": p.lag,
                    "records": p.records,
                    "dead_expected": p.dead_expected,
                    "dead_found": p.dead_found,
                    "dead_missing_offsets": p.dead_missing[:SAMPLE],
                }
                for p in self.partitions
            ],
            "events_in": self.events_in,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "dead_by_reason": self.dead_by_reason,
            "dead_letter_topic_by_reason": self.dead_letter_topic_by_reason,
            "parcels": self.parcels,
            "statuses": self.statuses,
            "clickhouse_parcels": self.clickhouse_parcels,
            "clickhouse_note": self.clickhouse_note,
            "problems": [finding(f) for f in self.problems],
            "behind": [finding(f) for f in self.behind],
        }


async def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """A consumer group's committed offsets (a partition without one is absent)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="trackbone-verify", **security_options()
    )
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        (tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0
    }


async def read_topic(
    bootstrap: str, topic: str, on_record: Callable[[Any], None]
) -> dict[int, int]:
    """Feed every record of ``topic`` up to its end offsets at start; return the ends."""
    consumer = make_consumer(bootstrap, client_id=f"trackbone-verify-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        try:
            partitions = await topic_partitions(consumer, [topic])
        except ValueError:  # no such topic: nothing to read
            return {}
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        active = {tp for tp in partitions if ends[tp] > 0}
        while active:
            batch = await consumer.getmany(*active, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        on_record(record)
            for tp in list(active):
                if await consumer.position(tp) >= ends[tp]:
                    active.discard(tp)
        return {tp.partition: ends[tp] for tp in partitions}
    finally:
        await consumer.stop()


def _header(record: Any, name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None


async def kafka_side(
    settings: Settings, bootstrap: str
) -> tuple[ReplayResult, list[PartitionRow], dict[str, int | None], dict[str, int]]:
    """The reference fold at the committed offsets, the partition rows, statuses, dead letters
    by reason.
    """
    topics = settings.topics
    committed = await committed_offsets(bootstrap, settings.app_id)
    reference = await replay(settings, bootstrap, until=committed)
    consumer = make_consumer(bootstrap, client_id="trackbone-verify-ends", settings=settings)
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic, ends in reference.end_offsets.items()
            for p in sorted(ends)
        ]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    rows = [
        PartitionRow(
            tp.topic,
            tp.partition,
            ends[tp],
            committed.get((tp.topic, tp.partition), begins[tp]),
        )
        for tp in tps
    ]
    for row in rows:
        row.records = max(0, row.committed - begins[TopicPartition(row.topic, row.partition)])
        row.dead_expected = len(reference.dead_offsets.get((row.topic, row.partition), ()))

    statuses: dict[str, int | None] = {}

    def on_status(record: Any) -> None:
        if record.key is None:
            return
        parcel_id = record.key.decode("utf-8", "replace")
        if record.value is None:
            statuses[parcel_id] = None
        else:
            statuses[parcel_id] = int(avro.decode_status(record.value)["version"])

    found: dict[tuple[str, int], set[int]] = {}
    by_reason: dict[str, int] = {}

    def on_dead(record: Any) -> None:
        topic = (_header(record, "source_topic") or b"").decode()
        partition = int(_header(record, "source_partition") or -1)
        offset = int(_header(record, "source_offset") or -1)
        reason = (_header(record, "reason") or b"unknown").decode("utf-8", "replace")
        seen = found.setdefault((topic, partition), set())
        if offset not in seen:
            seen.add(offset)
            kind = reason.split(":", 1)[0]
            by_reason[kind] = by_reason.get(kind, 0) + 1

    await asyncio.gather(
        read_topic(bootstrap, topics.parcel_status, on_status),
        read_topic(bootstrap, topics.dead_letter, on_dead),
    )
    for row in rows:
        expected = reference.dead_offsets.get((row.topic, row.partition), set())
        have = {o for o in found.get((row.topic, row.partition), set()) if o < row.committed}
        row.dead_found = len(have)
        row.dead_missing = sorted(expected - have)
        row.dead_extra = sorted(have - expected)
    return reference, rows, statuses, by_reason


def clickhouse_side(query: Query) -> tuple[dict[str, int], dict[str, int]]:
    """(parcel -> version in parcel_state FINAL, parcel -> rows in parcel_events FINAL)."""
    return (
        _paged(query, "SELECT parcel_id, version FROM parcel_state FINAL"),
        _paged(query, "SELECT parcel_id, count() AS n FROM parcel_events FINAL GROUP BY parcel_id"),
    )


def _paged(query: Query, sql: str) -> dict[str, int]:
    out: dict[str, int] = {}
    after = ""
    while True:
        page = query(
            f"SELECT * FROM ({sql}) WHERE parcel_id > {{after:String}} "
            f"ORDER BY parcel_id LIMIT {PAGE_ROWS}",
            {"after": after},
        )
        rows = page["rows"]
        for parcel_id, value in rows:
            out[str(parcel_id)] = int(value)
        if len(rows) < PAGE_ROWS:
            return out
        after = str(rows[-1][0])


def reconcile(
    reference: ReplayResult,
    rows: list[PartitionRow],
    statuses: Mapping[str, int | None],
    dead_by_reason: Mapping[str, int],
    clickhouse: tuple[dict[str, int], dict[str, int]] | None,
    clickhouse_note: str | None = None,
    sink_caught_up: bool = True,
) -> Report:
    """Compare everything against the reference fold; pure, so it is tested on its own."""
    worker_caught_up = all(row.lag == 0 for row in rows)
    problems: dict[str, Finding] = {}
    behind: dict[str, Finding] = {}

    def problem(what: str, parcel_id: str) -> None:
        problems.setdefault(what, Finding(what)).add(parcel_id)

    def late(what: str, parcel_id: str) -> None:
        behind.setdefault(what, Finding(what)).add(parcel_id)

    for row in rows:
        for offset in row.dead_missing:
            problem("dead letter missing", f"{row.topic}[{row.partition}]@{offset}")
        for offset in row.dead_extra:
            problem(
                "dead letter for a record the fold applies",
                f"{row.topic}[{row.partition}]@{offset}",
            )
        if row.lag:
            late("worker has not committed", f"{row.topic}[{row.partition}]: {row.lag} records")

    visible = reference.visible()
    for parcel_id, state in visible.items():
        version = statuses.get(parcel_id, -1)
        if version is None or version == -1:
            problem("status missing (committed, yet no status)", parcel_id)
        elif version < state.version:
            problem("status older than its committed events", parcel_id)
        elif version > state.version and worker_caught_up:
            problem("status newer than its events", parcel_id)
    for parcel_id, version in statuses.items():
        if version is not None and parcel_id not in visible:
            if parcel_id in reference.states or not worker_caught_up:
                late("status ahead of the committed offsets", parcel_id)
            else:
                problem("status for a parcel no input made", parcel_id)

    clickhouse_parcels = None
    if clickhouse is not None:
        versions, events = clickhouse
        clickhouse_parcels = len(versions)
        settled = worker_caught_up and sink_caught_up
        for parcel_id, state in visible.items():
            status_version = statuses.get(parcel_id) or 0
            have = versions.get(parcel_id)
            if have is None:
                (problem if settled else late)("missing in ClickHouse", parcel_id)
            elif have > max(status_version, state.version):
                problem("ClickHouse version newer than the status topic", parcel_id)
            elif have != state.version:
                (problem if settled else late)("ClickHouse version disagrees", parcel_id)
            elif events.get(parcel_id, 0) != state.event_count:
                (problem if settled else late)("ClickHouse events disagree", parcel_id)
        for parcel_id in versions.keys() - visible.keys():
            if statuses.get(parcel_id) is None and worker_caught_up:
                (problem if settled else late)("extra in ClickHouse", parcel_id)
    return Report(
        partitions=rows,
        events_in=reference.records,
        applied=reference.applied,
        duplicates=reference.duplicates,
        dead_lettered=reference.dead,
        dead_by_reason=dict(reference.dead_reasons),
        dead_letter_topic_by_reason=dict(dead_by_reason),
        parcels=len(visible),
        statuses=sum(1 for v in statuses.values() if v is not None),
        clickhouse_parcels=clickhouse_parcels,
        clickhouse_note=clickhouse_note,
        problems=list(problems.values()),
        behind=list(behind.values()),
    )


def render(report: Report, *, partitions: bool = True) -> str:
    """The report for people: partitions, the identity, then each finding."""
    lines = ["partition                                  end  committed   lag  dead exp/found"]
    lag = sum(p.lag for p in report.partitions)
    compared = sum(p.records for p in report.partitions)
    if not partitions:
        lines = [f"compared at the committed offsets of {len(report.partitions)} input partitions"
                 f" ({compared:,} records, lag {lag:,})"]  # fmt: skip
    for p in report.partitions if partitions else ():
        name = f"{p.topic}[{p.partition}]"
        dead = f"{p.dead_expected:>4}/{p.dead_found}"
        lines.append(f"{name:<38} {p.end:>8} {p.committed:>10} {p.lag:>5}  {dead}")
    identity = report.applied + report.duplicates + report.dead_lettered
    lines += [
        *([""] if partitions else []),
        f"events in (to the committed offsets): {report.events_in:,}"
        f" = applied {report.applied:,} + duplicates {report.duplicates:,}"
        f" + dead-lettered {report.dead_lettered:,}"
        f"{'' if identity == report.events_in else '  (DOES NOT ADD UP)'}",
        f"dead letters by reason (fold / topic): {report.dead_by_reason} / "
        f"{report.dead_letter_topic_by_reason}",
        f"parcels visible: {report.parcels:,}; statuses: {report.statuses:,}; ClickHouse: "
        + (
            f"{report.clickhouse_parcels:,}"
            if report.clickhouse_parcels is not None
            else f"not compared ({report.clickhouse_note})"
        ),
    ]
    for title, findings in (("MISMATCH", report.problems), ("behind", report.behind)):
        for f in findings:
            lines.append(f"{title}: {f.what}: {f.count:,} (e.g. {', '.join(f.sample[:5])})")
    lines.append(
        "all agree"
        if report.ok
        else "mismatch"
        if report.problems
        else "no mismatch yet, but not caught up (--wait)"
    )
    return "\n".join(lines)
