"""How many more recordings are worth making, from a measured table: the Record page's hint.

``bench/bench_data_efficiency.py`` trains personal models from 10, 25 and 50 recordings of each
atypical sample speaker (Whisper tiny.en and the built-in model, the same test phrases) and
writes the mean results, with where they came from, to ``workbench/data/recording_hint.json``
(:data:`HINT_FILE`). :func:`page_hint` turns that table into one sentence for the Record page
("With 10 recordings to learn from, expect about 30 % fewer word errors ..."). Where no
measured table is shipped, it says nothing: no number is ever invented. The file is checked
as untrusted (:func:`parse_table`): a damaged one is refused with a plain message, and the
page shows that message instead of a figure.

Recordings are counted as the speaker's usable takes. A personalization keeps a share of the
prompts aside as test phrases (:attr:`RunDefaults.test_fraction
<workbench.defaults.RunDefaults.test_fraction>`, a quarter), so a table size of N recordings to
learn from needs about N / (1 - 0.25) takes in all.

>>> table = parse_table({"format": 1, "source": "data_efficiency_cpu.json",
...     "command": "python -m bench.bench_data_efficiency", "measured": "2026-12-06", "machine": "2-core CPU",
...     "speakers": ["sim-accent"], "test_fraction": 0.25, "models": {"whisper-tiny.en": [
...     {"recordings": 10, "relative_reduction": 0.2, "wer_before": 0.5, "wer_after": 0.4, "runs": 2},
...     {"recordings": 25, "relative_reduction": 0.4, "wer_before": 0.5, "wer_after": 0.3, "runs": 2}]}})
>>> print(hint_text(14, table, "whisper-tiny.en"))  # doctest: +NORMALIZE_WHITESPACE
With 10 recordings to learn from, expect about 20 % fewer word errors; with 25, about 40 %. 20 more
recordings (34 in all; 25 % of the sentences are kept aside to test the model) are worth making.
Measured on 1 simulated speaker (2026-12-06).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import WorkbenchError

__all__ = ["FORMAT", "HINT_FILE", "WORTH", "HintPoint", "HintTable", "RecordingHintError", "hint_text", "load_table",
           "page_hint", "parse_table"]

FORMAT = 1  # the table file's format version
HINT_FILE = Path(__file__).resolve().parent / "data" / "recording_hint.json"
# a larger size is worth recording towards when it is expected to remove at least this share of
# the base model's word errors more (5 points of relative reduction: about the seed-to-seed spread)
WORTH = 0.05


class RecordingHintError(WorkbenchError, ValueError):
    """The shipped table of expected results cannot be used (``str(err)`` says why and what to do)."""


@dataclasses.dataclass(frozen=True)
class HintPoint:
    """The mean result of personalizing from ``recordings`` recordings (training and validation)."""

    recordings: int
    relative_reduction: float  # mean relative WER reduction on the test phrases (0.3 = 30 % fewer errors)
    wer_before: float  # mean base-model WER on the test phrases (0..)
    wer_after: float  # mean personal-model WER on the same phrases
    runs: int  # speakers x seeds averaged


@dataclasses.dataclass(frozen=True)
class HintTable:
    """The measured table and where it came from."""

    models: dict[str, tuple[HintPoint, ...]]  # base model name -> points, increasing recordings
    source: str  # the benchmark result it was made from
    command: str  # the command that measured it
    measured: str  # when
    machine: str  # where
    speakers: tuple[str, ...]  # the (simulated) speakers averaged
    test_fraction: float  # share of a speaker's prompts kept as test phrases


def _refuse(where: str, what: str) -> RecordingHintError:
    return RecordingHintError(f"The table of expected results ({where}) is damaged: {what}. No estimate is shown; "
                              "reinstall the workbench, or remove the file to go without the estimate.")


def _number(value: Any, name: str, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise _refuse(where, f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _count(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise _refuse(where, f"{name} must be a whole number from 1 to 100000, got {value!r}")
    return value


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise _refuse(where, f"{name} must be a short text, got {value!r:.60}")
    return value


def parse_table(data: Any, *, where: str = "workbench/data/recording_hint.json") -> HintTable:
    """Check the table's content (untrusted: a JSON object as written by bench_data_efficiency).

    Raises:
        RecordingHintError: anything missing, of the wrong type, out of range, or sizes not increasing.
    """
    if not isinstance(data, dict):
        raise _refuse(where, "it is not a JSON object")
    if data.get("format") != FORMAT:
        raise _refuse(where, f"format {data.get('format')!r} is not {FORMAT}")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise _refuse(where, "it lists no model")
    parsed: dict[str, tuple[HintPoint, ...]] = {}
    for name, points in models.items():
        _text(name, "a model name", where)
        if not isinstance(points, list) or not points or len(points) > 20:
            raise _refuse(where, f"model {name!r} has no list of 1 to 20 sizes")
        out = []
        for p in points:
            if not isinstance(p, dict):
                raise _refuse(where, f"a size of model {name!r} is not an object")
            out.append(HintPoint(recordings=_count(p.get("recordings"), "recordings", where),
                                 relative_reduction=_number(p.get("relative_reduction"), "relative_reduction", where,
                                                            -10.0, 1.0),
                                 wer_before=_number(p.get("wer_before"), "wer_before", where, 0.0, 10.0),
                                 wer_after=_number(p.get("wer_after"), "wer_after", where, 0.0, 10.0),
                                 runs=_count(p.get("runs"), "runs", where)))
        if any(b.recordings <= a.recordings for a, b in zip(out, out[1:])):
            raise _refuse(where, f"the sizes of model {name!r} do not increase")
        parsed[name] = tuple(out)
    speakers = data.get("speakers")
    if not isinstance(speakers, list) or not speakers:
        raise _refuse(where, "it names no speaker")
    return HintTable(models=parsed, source=_text(data.get("source"), "source", where),
                     command=_text(data.get("command"), "command", where),
                     measured=_text(data.get("measured"), "measured", where),
                     machine=_text(data.get("machine"), "machine", where),
                     speakers=tuple(_text(s, "a speaker", where) for s in speakers),
                     test_fraction=_number(data.get("test_fraction"), "test_fraction", where, 0.0, 0.9))


def load_table(path: str | Path | None = None) -> HintTable | None:
    """The table at ``path`` (default :data:`HINT_FILE`); None when there is none (nothing measured yet).

    Raises:
        RecordingHintError: the file is there but unreadable or damaged.
    """
    path = Path(path) if path is not None else HINT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise _refuse(path.name, f"it cannot be read as JSON ({err})") from err
    return parse_table(data, where=path.name)


def _pct(x: float) -> str:
    return f"{round(100 * x)} %"


def hint_text(recordings: int, table: HintTable, model: str) -> str | None:
    """What more recordings are expected to buy, for a speaker with ``recordings`` usable takes
    whose personal model would train on ``model``; None where the table has no figures for it.

    The sentence gives every measured size, then either how many more takes reach the next size
    that is expected to remove at least :data:`WORTH` more of the errors, or that more add little.
    """
    points = table.models.get(model)
    if not points:
        return None
    keep = 1.0 - table.test_fraction
    learn = math.floor(recordings * keep + 1e-9)  # takes a run would learn from
    first, *rest = points
    sizes = f"With {first.recordings} recordings to learn from, expect about {_pct(first.relative_reduction)} fewer " \
            "word errors" + "".join(f"; with {p.recordings}, about {_pct(p.relative_reduction)}" for p in rest) + "."
    have = [p for p in points if p.recordings <= learn]
    current = have[-1].relative_reduction if have else None
    worth = next((p for p in points if p.recordings > learn
                  and (current is None or p.relative_reduction - current >= WORTH)), None)
    if worth is not None:
        total = math.ceil(worth.recordings / keep - 1e-9)
        advice = (f"{total - recordings} more recordings ({total} in all; {_pct(table.test_fraction)} of the "
                  "sentences are kept aside to test the model) are worth making.")
    elif any(p.recordings > learn for p in points):
        advice = "More recordings than this are expected to add little."
    else:
        advice = f"This speaker has more recordings than the largest size measured ({points[-1].recordings})."
    n = len(table.speakers)
    return f"{sizes} {advice} Measured on {n} simulated speaker{'s' if n != 1 else ''} ({table.measured})."


def page_hint(speaker_info: dict[str, Any] | None, recordings: int, *, path: str | Path | None = None) -> str:
    """The Record page's line: :func:`hint_text` for the base model this speaker's run would use
    (:func:`workbench.models.choice.choose_base_model`), the refusal of a damaged table in words,
    or "" when no measured table is shipped (the page then says nothing)."""
    from workbench.models.choice import choose_base_model

    try:
        table = load_table(path)
    except RecordingHintError as err:
        return str(err)
    if table is None:
        return ""
    model = choose_base_model(speaker_info, RUN_DEFAULTS.model).name
    return hint_text(recordings, table, model) or ""
