"""Schema files: every change stays compatible both ways, and Python cannot drift from them.

For each schema and each earlier version kept in ``schemas/history``, data written
with the old version must be readable with the current one (consumers upgrade
first or last, both happen) and data written with the current one must be
readable with the old one. Failures name the schema, the versions and the field.
"""

from __future__ import annotations

import dataclasses
import io
import types
import typing
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from projections import events as domain
from projections.events import EVENT_CLASSES, EventType
from streams.avro import _strip_logical_types

# --- a hypothesis strategy for any value of an Avro schema ---------------------------------

_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    "bytes": st.binary(max_size=12),
}


def avro_values(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values of `schema` (JSON form; named types referenced by short or full name)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        return avro_values(named[schema.rsplit(".", 1)[-1]], named)
    if isinstance(schema, list):
        return st.one_of([avro_values(branch, named) for branch in schema])
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        named[schema["name"].rsplit(".", 1)[-1]] = schema
    if kind == "record":
        return st.fixed_dictionaries(
            {f["name"]: avro_values(f["type"], named) for f in schema["fields"]}
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(avro_values(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(
            _PRIMITIVES["string"], avro_values(schema["values"], named), max_size=3
        )
    return avro_values(kind, named)


# --- versions ------------------------------------------------------------------------------

PAIRS = [
    pytest.param(name, version, old, id=f"{name}-v{version}")
    for name in schemas.names()
    for version, old in schemas.history(name)
]


def _fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in schema["fields"]}


def _check_defaults(label: str, writer: dict[str, Any], reader: dict[str, Any]) -> None:
    missing = [
        name
        for name, field in _fields(reader).items()
        if name not in _fields(writer) and "default" not in field
    ]
    assert not missing, (
        f"{label}: reader field(s) {missing} are absent from the writer and have no default"
    )


def _write_then_read(writer: dict[str, Any], reader: dict[str, Any], record: Any) -> Any:
    w = parse_schema(_strip_logical_types(writer))
    r = parse_schema(_strip_logical_types(reader))
    buf = io.BytesIO()
    schemaless_writer(buf, w, record)
    buf.seek(0)
    return schemaless_reader(buf, w, r)


def _check_resolution(
    label: str, writer: dict[str, Any], reader: dict[str, Any], data: Any
) -> None:
    record = data.draw(avro_values(_strip_logical_types(writer)), label="record")
    try:
        read = _write_then_read(writer, reader, record)
    except Exception as exc:
        pytest.fail(f"{label}: data does not resolve: {exc!r}")
    reader_fields = _fields(reader)
    for name, field in reader_fields.items():
        if name in record:
            assert read[name] == record[name], f"{label}: field {name!r} changed on the way"
        else:
            assert read[name] == field["default"], (
                f"{label}: field {name!r} did not get its default"
            )


@pytest.mark.parametrize(("name", "version", "old"), PAIRS)
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_old_writer_is_read_by_current_reader(
    name: str, version: int, old: dict[str, Any], data: st.DataObject
) -> None:
    current = schemas.load_schema(name)
    label = f"{name}: v{version} writer -> current v{schemas.current_version(name)} reader"
    _check_defaults(label, old, current)
    _check_resolution(label, old, current, data)


@pytest.mark.parametrize(("name", "version", "old"), PAIRS)
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_current_writer_is_read_by_old_reader(
    name: str, version: int, old: dict[str, Any], data: st.DataObject
) -> None:
    current = schemas.load_schema(name)
    label = f"{name}: current v{schemas.current_version(name)} writer -> v{version} reader"
    _check_defaults(label, current, old)
    _check_resolution(label, current, old, data)


def test_parcel_status_keeps_its_first_version() -> None:
    assert [v for v, _ in schemas.history("ParcelStatus")] == [1]
    assert schemas.current_version("ParcelStatus") == 2


@pytest.mark.parametrize("name", schemas.names())
def test_history_is_numbered_and_distinct(name: str) -> None:
    all_versions = schemas.versions(name)
    assert [v for v, _ in all_versions] == list(range(1, len(all_versions) + 1)), name
    forms = [to_parsing_canonical_form(parse_schema(s)) for _, s in all_versions]
    assert len(set(forms)) == len(forms), f"{name}: two versions have the same canonical form"
    for version, schema in all_versions:
        assert schema["name"] == name, f"{name} v{version} defines record {schema['name']!r}"


def test_the_checks_catch_a_field_added_without_default() -> None:
    current = schemas.load_schema("ParcelStatus")
    broken = schemas.load_schema("ParcelStatus")
    broken["fields"].append({"name": "carrier", "type": "string"})
    with pytest.raises(AssertionError, match=r"ParcelStatus.*\['carrier'\]"):
        _check_defaults("ParcelStatus", current, broken)


# --- Python <-> schema drift ---------------------------------------------------------------


def _is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _is_nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _check_record_against_class(label: str, record: dict[str, Any], cls: type) -> None:
    hints = typing.get_type_hints(cls)
    py_fields = {f.name: f for f in dataclasses.fields(cls)}
    avro_fields = _fields(record)
    assert set(avro_fields) == set(py_fields), (
        f"{label}: schema fields and {cls.__name__} fields differ: "
        f"only in schema {sorted(set(avro_fields) - set(py_fields))}, "
        f"only in Python {sorted(set(py_fields) - set(avro_fields))}"
    )
    for name, field in avro_fields.items():
        assert _is_nullable(field["type"]) == _is_optional(hints[name]), (
            f"{label}: field {name!r} is nullable in one of schema and {cls.__name__} only"
        )
        py_default = py_fields[name].default
        if py_default is dataclasses.MISSING:
            assert "default" not in field, f"{label}: field {name!r} has a default in Avro only"
        else:
            assert field.get("default", dataclasses.MISSING) == py_default, (
                f"{label}: field {name!r} default differs (schema vs {cls.__name__})"
            )


def _named_types(schema: Any, found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            found[schema["name"].rsplit(".", 1)[-1]] = schema
        for field in schema.get("fields", ()):
            _named_types(field["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], found)
    return found


@pytest.mark.parametrize("kind", list(EventType))
def test_event_schema_matches_domain_class(kind: EventType) -> None:
    schema = schemas.load_schema(kind.value)
    assert kind.value in schemas.EVENT_SCHEMAS
    _check_record_against_class(f"{kind.value}.avsc", schema, EVENT_CLASSES[kind])
    for type_name, named in _named_types(schema, {}).items():
        if type_name == kind.value:
            continue
        py = getattr(domain, type_name, None)
        assert py is not None, f"{kind.value}.avsc: named type {type_name} has no Python twin"
        if named["type"] == "record":
            _check_record_against_class(f"{kind.value}.avsc {type_name}", named, py)
        else:
            assert named["symbols"] == [m.value for m in py], (
                f"{kind.value}.avsc: enum {type_name} symbols differ from projections.events"
            )


def test_every_event_type_has_a_schema_and_nothing_else_is_an_event() -> None:
    assert set(schemas.EVENT_SCHEMAS) == {kind.value for kind in EventType}
    assert set(schemas.names()) == {*schemas.EVENT_SCHEMAS, schemas.STATUS_SCHEMA}


def test_parcel_status_has_the_brief_fields() -> None:
    fields = _fields(schemas.load_schema("ParcelStatus"))
    required = [
        "parcel_id",
        "milestone",
        "delivered_at",
        "holds",
        "attempts",
        "event_count",
        "custodian",
        "registered",
        "last_event_time",
        "origin_country",
        "origin_city",
        "destination_country",
        "destination_city",
        "service",
        "promised_hours",
        "registered_at",
        "promised_at",
        "eta_p50",
        "eta_p90",
        "on_time_probability",
        "eta_basis",
        "version",
        "updated_at",
    ]
    assert [name for name in required if name not in fields] == []
    for name in ("delivered_at", "last_event_time", "registered_at", "promised_at", "updated_at"):
        avro_type = fields[name]["type"]
        branch = avro_type[1] if isinstance(avro_type, list) else avro_type
        assert branch == {"type": "long", "logicalType": "timestamp-millis"}, name


def test_every_field_is_documented() -> None:
    for name in schemas.names():
        for version, schema in schemas.versions(name):
            for field in schema["fields"]:
                assert field.get("doc"), f"{name} v{version}: field {field['name']!r} has no doc"
