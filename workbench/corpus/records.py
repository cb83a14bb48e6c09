"""The records of a speaker folder: one take (:class:`Utterance`, a manifest line), the rules for names and texts.

Pure data and checks, no disk: the folder itself is :mod:`workbench.corpus.folder`.
A take's text must contain words that can be scored (:func:`workbench.text.normalize_text`);
ids must be safe as one file-name component on every system.

>>> utt = Utterance(utt_id="00001-a3f9c2", audio_path="audio/00001-a3f9c2.flac", prompt="good morning",
...                 duration_s=1.5, created="2024-05-01T12:00:00+00:00")
>>> Utterance.from_json(utt.to_json()) == utt
True
>>> validate_speaker_id("spk-017")
'spk-017'
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from workbench import audio as _audio
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import CorpusError
from workbench.text import normalize_text, prompt_key

__all__ = ["MISSING", "STATUSES", "Utterance", "split_by_prompt", "validate_speaker_id"]

#: Statuses stored in the manifest (:attr:`Utterance.status`, :meth:`SpeakerCorpus.set_status`).
STATUSES = ("ok", "rejected", "skipped")
#: The status :meth:`SpeakerCorpus.utterances` gives a take whose audio file is gone (never stored).
MISSING = "missing"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "clock$"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)
_REQUIRED_KEYS = ("utt_id", "audio_path", "prompt", "duration_s", "created", "status")
# str.splitlines() also breaks at these; inside one prompt they become spaces
_LINE_SEPARATORS = re.compile(" *[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029][ \x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]*")


# Names and small helpers
# --------------------------------------------------------------------------- #


def _name_problem(value: Any) -> str | None:
    """Why ``value`` is not a safe file-name component, or None if it is."""
    if not isinstance(value, str):
        return f"is not text (it is a {type(value).__name__})"
    if value == "":
        return "is empty"
    if "\x00" in value:
        return "contains a NUL character"
    if "/" in value or "\\" in value:
        return "contains a path separator ('/' or '\\')"
    if value.startswith("."):
        return "starts with a dot (a hidden or relative folder)"
    if ".." in value:
        return "contains '..'"
    if len(value) > 64:
        return f"is {len(value)} characters long (at most 64)"
    if not _NAME_RE.fullmatch(value):
        return "contains characters other than letters, digits, '-', '_' or '.', or does not start with a letter or digit"
    if value.endswith("."):
        return "ends with a dot (Windows would drop it)"
    if value.split(".")[0].lower() in _RESERVED:
        return "is a reserved device name on Windows"
    return None


def _validate_name(value: Any, kind: str, example: str) -> str:
    reason = _name_problem(value)
    if reason is not None:
        raise CorpusError(
            f"{kind} {value!r} is not allowed: it {reason}. Use letters, digits, '-' or '_' "
            f"(up to 64 characters, starting with a letter or digit), e.g. {example!r}."
        )
    return value


def validate_speaker_id(speaker_id: str) -> str:
    """Return ``speaker_id`` if it is safe as one folder name, else raise CorpusError.

    Allowed: ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`` with no ``..``, no trailing dot
    and no Windows device name (``con``, ``nul``, ``com1``...). Speaker ids
    should be de-identified codes, not names.

    >>> validate_speaker_id("spk-017")
    'spk-017'
    """
    return _validate_name(speaker_id, "Speaker id", "spk-017")


def _now() -> str:
    """Current time, ISO-8601 UTC with seconds (``2024-05-01T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _one_line(text: str) -> str:
    """Unicode line and paragraph separators (U+2028 ...) become spaces; spacing is collapsed.

    Newlines and carriage returns are not touched (callers refuse them): they are visible
    line breaks, the others come invisibly from copy and paste.
    """
    return _LINE_SEPARATORS.sub(" ", text).strip() if _LINE_SEPARATORS.search(text) else text


def _text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a prompt or transcript, or None: line breaks, broken characters, no words."""
    if "\n" in text or "\r" in text:
        return "has a line break; each prompt must be one line"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        return (f"contains a broken character (U+{ord(bad):04X}, half of a pair, usually from copying text "
                "between programs); type the prompt again")
    if not normalize_text(text):
        return ("has no words that can be scored (letters a-z or numbers; punctuation, symbols and other "
                "alphabets are ignored), so every recording of it would count as an empty sentence")
    return None


def _json_problem(value: Any) -> str | None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in the manifest")


# --------------------------------------------------------------------------- #
# Utterance
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Utterance:
    """One take: a line of ``manifest.jsonl``.

    Attributes:
        utt_id: unique within the speaker folder; a safe file-name component.
        audio_path: relative to the speaker folder, posix, e.g. ``"audio/00001-3fa2c1.flac"``.
        prompt: the text the speaker was asked to read.
        transcript: what was actually said (defaults to ``prompt``).
        duration_s: length of the stored audio in seconds (samples / 16000).
        quality: :meth:`workbench.audio.QualityReport.to_dict` of the take.
        consent_id: the consent record this take was made under, if any.
        created: ISO-8601 UTC time of recording (defaults to now).
        status: ``"ok"`` (used for training), ``"rejected"`` (kept, not used)
            or ``"skipped"``.
        extra: free JSON-safe dict (e.g. ``{"source_file": "a.wav"}``).
    """

    utt_id: str
    audio_path: str
    prompt: str
    transcript: str | None = None
    duration_s: float = 0.0
    quality: dict[str, Any] = field(default_factory=dict)
    consent_id: str | None = None
    created: str = ""
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate_name(self.utt_id, "Utterance id", "00017-a3f9c2")
        for name in ("audio_path", "prompt"):
            if not isinstance(getattr(self, name), str):
                raise CorpusError(f"{name} must be text, got {getattr(self, name)!r}.")
        if self.transcript is None:
            object.__setattr__(self, "transcript", self.prompt)
        elif not isinstance(self.transcript, str):
            raise CorpusError(
                f"transcript must be text or None, got {self.transcript!r}."
            )
        p = self.audio_path
        parts = PurePosixPath(p).parts
        if (
            not p
            or "\\" in p
            or "\x00" in p
            or p.startswith("/")
            or ".." in parts
            or not parts
        ):
            raise CorpusError(
                f"audio_path {p!r} must be a relative path inside the speaker folder, e.g. 'audio/x.flac'."
            )
        d = self.duration_s
        if (
            isinstance(d, bool)
            or not isinstance(d, (int, float))
            or not math.isfinite(d)
            or d < 0
        ):
            raise CorpusError(
                f"duration_s must be a number of seconds >= 0, got {d!r}."
            )
        object.__setattr__(self, "duration_s", float(d))
        for name in ("quality", "extra"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise CorpusError(f"{name} must be a dict, got {value!r}.")
            reason = _json_problem(value)
            if reason is not None:
                raise CorpusError(
                    f"{name} must hold only JSON values (text, numbers, lists, dicts): {reason}."
                )
        if self.consent_id is not None and not isinstance(self.consent_id, str):
            raise CorpusError(
                f"consent_id must be text or None, got {self.consent_id!r}."
            )
        if self.status not in STATUSES and self.status != MISSING:  # MISSING: only ever derived, see utterances()
            raise CorpusError(
                f"status must be one of {', '.join(STATUSES)}; got {self.status!r}."
            )
        if self.created == "":
            object.__setattr__(self, "created", _now())
        elif not isinstance(self.created, str):
            raise CorpusError(
                f"created must be an ISO-8601 time as text, got {self.created!r}."
            )
        else:
            try:
                _dt.datetime.fromisoformat(self.created)
            except ValueError:
                raise CorpusError(
                    f"created {self.created!r} is not an ISO-8601 time such as '2024-05-01T12:00:00+00:00'."
                ) from None

    def __hash__(
        self,
    ) -> int:  # the dict fields are not hashable; equal takes share these
        return hash((self.utt_id, self.audio_path, self.status, self.created))

    @property
    def quality_report(self) -> _audio.QualityReport:
        """The quality check :meth:`SpeakerCorpus.add_take` decided this take's status by.

        Its ``ok`` is the decision (``status`` is ``"ok"`` or ``"rejected"`` accordingly,
        unless the caller set a status), ``problems`` the reasons and ``message`` the
        plain-language text a view shows. Rebuilt from :attr:`quality`.
        """
        return _audio.QualityReport.from_dict(self.quality)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-safe dict."""
        return {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in dataclasses.fields(self)
        }

    def to_json(self) -> str:
        """One manifest line (no newline), UTF-8 text."""
        return json.dumps(
            self.to_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )

    @classmethod
    def from_dict(cls, d: Any, *, line_no: int | None = None) -> Utterance:
        """Strictly validated construction; unknown keys are ignored (newer versions may add some).

        Raises:
            CorpusError: missing key or wrong type, naming ``line_no`` if given.
        """
        where = f"manifest line {line_no}: " if line_no is not None else ""
        if not isinstance(d, dict):
            raise CorpusError(f"{where}expected a JSON object, got {type(d).__name__}.")
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise CorpusError(f"{where}missing {', '.join(missing)}.")
        kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        if "quality" in kwargs and kwargs["quality"] is None:
            kwargs["quality"] = {}
        if kwargs.get("status") == MISSING:  # derived from the folder, never stored
            raise CorpusError(f"{where}status must be one of {', '.join(STATUSES)}; got {MISSING!r}.")
        try:
            return cls(**kwargs)
        except CorpusError as exc:
            raise CorpusError(f"{where}{exc}") from None

    @classmethod
    def from_json(cls, line: str | bytes, *, line_no: int | None = None) -> Utterance:
        """Parse one manifest line (inverse of :meth:`to_json`).

        Raises:
            CorpusError: not UTF-8, not JSON (NaN/Infinity included), or invalid
            fields; the message names ``line_no`` if given.
        """
        where = f"manifest line {line_no}: " if line_no is not None else ""
        if isinstance(line, (bytes, bytearray)):
            try:
                line = bytes(line).decode("utf-8")
            except UnicodeDecodeError:
                raise CorpusError(
                    f"{where}not valid UTF-8 text (damaged bytes)."
                ) from None
        try:
            obj = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise CorpusError(f"{where}not valid JSON.") from None
        return cls.from_dict(obj, line_no=line_no)


def _latest(lines: Sequence[Utterance]) -> list[Utterance]:
    """Later lines supersede earlier ones with the same utt_id; order of first appearance."""
    latest: dict[str, Utterance] = {}
    for utt in lines:
        latest[utt.utt_id] = utt  # dict keeps the first insertion position
    return list(latest.values())


def split_by_prompt(
    utts: Sequence[Utterance], *, fraction: float, seed: int = RUN_DEFAULTS.seed
) -> tuple[list[Utterance], list[Utterance]]:
    """Deterministic split of takes by prompt: ``(rest, aside)``, each in the given order.

    All takes of one prompt (compared ignoring case, punctuation and spacing) land
    on the same side. Prompts are ranked by a hash of ``(seed, prompt text)``, and
    the ``round(fraction * n_prompts)`` lowest are set aside; with two or more
    prompts and ``fraction > 0`` at least one prompt is on each side. Used for the
    test split (:meth:`SpeakerCorpus.split`) and again, inside the training side,
    for the validation recordings that decide early stopping.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise CorpusError(f"the share to set aside must be at least 0 and below 1, e.g. 0.2; got {fraction!r}.")

    def rank(key: str) -> bytes:
        return hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()

    keys = sorted({prompt_key(u.prompt) for u in utts})
    n = len(keys)
    k = round(fraction * n)
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    elif n < 2:
        k = 0
    aside_keys = set(sorted(keys, key=rank)[:k])
    rest = [u for u in utts if prompt_key(u.prompt) not in aside_keys]
    aside = [u for u in utts if prompt_key(u.prompt) in aside_keys]
    return rest, aside


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise CorpusError(
            "prompts must be a list of prompts, not one string. Wrap it: [prompt]."
        )
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise CorpusError(f"Prompt {i + 1} must be text, got {p!r}.")
        p = _one_line(p.strip())
        if not p:  # a blank entry, like a blank line in a prompt file
            continue
        reason = _text_problem(p)
        if reason is not None:
            raise CorpusError(f"Prompt {i + 1} ({p!r}) {reason}. Nothing was saved; fix it and try again.")
        out.append(p)
    return out
