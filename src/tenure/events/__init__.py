"""Perceive: the canonical event envelope, typed payloads, and parsers that never lose a line."""

from tenure.events.csv_import import CsvMapping, read_csv
from tenure.events.envelope import EVENT_TYPES, Event, json_schema
from tenure.events.parse import LineParser, RawLine, Reject, read_lines

__all__ = [
    "EVENT_TYPES",
    "CsvMapping",
    "Event",
    "LineParser",
    "RawLine",
    "Reject",
    "json_schema",
    "read_csv",
    "read_lines",
]
