"""What the streaming recognizer yields: :class:`CaptionEvent`, and the :class:`Word` it is made of.

Times are seconds of audio since the stream began (sample ``n`` is at ``n / 16000`` s).
``emitted_s`` is on the same clock: the moment the event would reach the screen if the
audio were played in real time (see :class:`~workbench.live.stream.StreamingRecognizer`).
"""

from __future__ import annotations

import dataclasses

__all__ = ["CaptionEvent", "Word"]


@dataclasses.dataclass(frozen=True)
class Word:
    """One recognized word and the audio it covers (seconds since the stream began)."""

    text: str
    start_s: float
    end_s: float


@dataclasses.dataclass(frozen=True)
class CaptionEvent:
    """A caption: ``"partial"`` (may still change) or ``"commit"`` (final).

    A commit holds the words committed at once (one or more, joined by spaces); the
    partials after it hold only the words not yet committed (an empty partial text
    clears the unstable line).

    Attributes:
        kind: ``"partial"`` or ``"commit"``.
        text: normalized words (lower case, no punctuation), space-separated.
        start_s: audio time where the first word starts, seconds since the stream began.
        end_s: audio time where the last word ends.
        emitted_s: time since the stream began when the event was emitted (the same clock
            as the audio when it is played in real time).
        words: a commit's words with their own audio times (empty for a partial).
    """

    kind: str
    text: str
    start_s: float
    end_s: float
    emitted_s: float
    words: tuple[Word, ...] = ()

    def to_json(self) -> dict:
        """``{"event", "text", "start", "end", "emitted"}`` as ``workbench listen --json`` prints it (ms precision)."""
        return {"event": self.kind, "text": self.text, "start": round(self.start_s, 3), "end": round(self.end_s, 3),
                "emitted": round(self.emitted_s, 3)}
