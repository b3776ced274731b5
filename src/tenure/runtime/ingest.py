"""Opening inputs and running them through the pipeline: what `tenure run` does."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from tenure.documents import read_yaml
from tenure.errors import ConfigError, InputError
from tenure.events.csv_import import CsvMapping, mapping_of, read_csv
from tenure.events.envelope import DEFAULT_MAX_FUTURE_SKEW, Event
from tenure.events.parse import Cut, Horizon, LineParser, Reject, read_bounded
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy
from tenure.runtime.clock import Clock, EventClock, WallClock
from tenure.runtime.engine import Engine
from tenure.runtime.pipeline import DEFAULT_BATCH_SIZE, RunSummary

Progress = Callable[[int], None]  # called with the number of bytes read since the last call


@dataclass(frozen=True)
class Source:
    """Where events come from: a file path or '-' for standard input, and its format."""

    path: str
    format: str = "jsonl"  # or "csv"
    mapping: CsvMapping | None = None

    @property
    def is_stdin(self) -> bool:
        """True when reading standard input."""
        return self.path == "-"

    def size(self) -> int | None:
        """Size in bytes for a progress bar, when known."""
        if self.is_stdin:
            return None
        try:
            return os.path.getsize(self.path)
        except OSError:
            return None

    def check(self) -> None:
        """Fail early, with one line, when the input cannot be read at all."""
        open_input(self).close() if not self.is_stdin else None


def detect_format(path: str, given: str | None) -> str:
    """The input format: as given, else from the file extension, else JSONL."""
    if given:
        if given not in ("jsonl", "csv"):
            raise InputError(f"unknown input format {given!r}: use jsonl or csv")
        return given
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def open_input(source: Source) -> BinaryIO:
    """Open the input for binary reading, or fail with one line that says why."""
    if source.is_stdin:
        return sys.stdin.buffer
    path = Path(source.path)
    if not path.exists():
        raise InputError(f"events file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give an events file (JSONL or CSV)")
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def load_mapping(
    path: Path | None,
    pairs: list[str],
    constants: list[str],
    options: Mapping[str, str | None] | None = None,
) -> CsvMapping:
    """A CSV mapping: a YAML file (see README, "CSV input"), over it the run's CSV `options`
    (timezone, date_format, decimal, thousands, where) and FIELD=COLUMN / FIELD=VALUE pairs."""
    document = read_yaml(path, "CSV mapping") if path is not None else None
    try:
        mapping_of(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    mapping = mapping_of(document, options)  # the file is sound: what fails is an option
    columns, payload = dict(mapping.columns), dict(mapping.payload)
    fixed = dict(mapping.constants)
    for pair, target in [(p, "map") for p in pairs] + [(c, "set") for c in constants]:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"--{target} expects FIELD=VALUE, got {pair!r}")
        if target == "set":
            fixed[name] = value
        elif name.startswith("payload."):
            payload[name.removeprefix("payload.")] = value
        else:
            columns[name] = value
    return replace(mapping, columns=columns, payload=payload, constants=fixed)


def _metered(stream: BinaryIO, progress: Progress | None) -> Iterator[bytes | Cut]:
    """The stream's lines, none held longer than a line may be (see `read_bounded`)."""
    lines = read_bounded(stream)
    return lines if progress is None else _counted(lines, progress)


def _counted(lines: Iterator[bytes | Cut], progress: Progress) -> Iterator[bytes | Cut]:
    pending = 0
    for n, line in enumerate(lines, start=1):
        pending += line.size if isinstance(line, Cut) else len(line)
        yield line
        if n % 2048 == 0:
            progress(pending)
            pending = 0
    if pending:
        progress(pending)


def items(
    source: Source,
    stream: BinaryIO,
    parser: LineParser,
    progress: Progress | None = None,
    horizon: Horizon | None = None,
) -> Iterator[Event | Reject]:
    """Parsed events and rejects from the stream, in input order; an event too far ahead of the
    `horizon` (by default a day past the newest event so far and the wall clock) is a reject."""
    horizon = horizon or horizon_of(EventClock())
    lines = _metered(stream, progress)
    if source.format == "csv":
        yield from read_csv(lines, parser, source.mapping or CsvMapping.identity(), horizon)
        return
    yield from parser.parse_stream(lines, horizon)


def horizon_of(
    clock: Clock,
    skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW,
    newest: dt.datetime | None = None,
) -> Horizon:
    """How far ahead events may be: of the wall clock when it decides (live), else of both the
    newest event so far (`newest`: what the store saw before this input) and the wall clock (a
    replay's gaps are no reason to refuse)."""
    live = isinstance(clock, WallClock)
    return Horizon(skew, clock.now if live else WallClock().now, live=live, newest=newest)


def run(
    engine: Engine,
    policy: Policy | PolicySet | None,
    source: Source,
    clock: Clock,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> RunSummary:
    """Run one input through the engine's pipeline (default policy: the live set) into its store."""
    pipeline = engine.pipeline(policy, clock=clock, batch_size=batch_size)
    parser = engine.workspace.parser()
    skew = engine.workspace.settings.max_future_skew
    horizon = horizon_of(clock, skew, engine.newest_event())
    stream = open_input(source)
    try:
        label = "stdin" if source.is_stdin else str(Path(source.path).resolve())
        return pipeline.run(items(source, stream, parser, progress, horizon), label)
    finally:
        if not source.is_stdin:
            stream.close()


def load_events(path: str, parser: LineParser | None = None) -> list[Event]:
    """Every valid event of a JSONL or CSV file (bad lines are skipped here, not stored)."""
    source = Source(path, detect_format(path, None))
    stream = open_input(source)
    try:
        return [e for e in items(source, stream, parser or LineParser()) if isinstance(e, Event)]
    finally:
        if not source.is_stdin:
            stream.close()
