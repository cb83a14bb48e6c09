"""Live captions: :class:`StreamingRecognizer` turns audio chunks into partial and committed captions.

How it works (one idea each, in their own modules):

1. Every chunk goes into a bounded ring of recent audio (for corrections) and through the
   voice-activity detector (:mod:`~workbench.live.vad`). Nothing is decoded while nobody speaks,
   so silence and steady noise cost nothing and produce no words.
2. At a speech onset a *buffer* starts (``preroll_s`` before the first voiced frame). Every
   ``step_s`` of new audio (or later, when the previous decode is still running) the whole buffer
   is decoded again (:mod:`~workbench.live.decoders`) and the words two consecutive decodes agree
   on are committed (LocalAgreement-2, :mod:`~workbench.live.policy`), except those ending in the
   last ``holdback_s`` of audio (a word still being spoken); the rest is a partial caption.
3. After ``pause_s`` without a voiced frame, the buffer is decoded once more up to the pause
   and all its words are committed; the buffer is then dropped (trimmed at the pause). A phrase
   with less than ``defer_short_s`` of voice so far (a lone "I ...", "not ...") waits ``defer_s``
   longer: speech resuming by then continues the same buffer, so the words after the pause are
   decoded with it rather than alone. A buffer
   longer than ``max_buffer_s`` (no pause) is trimmed after its last committed word.

**The clock.** ``emitted_s`` is when an event would appear if the audio arrived in real time:
a decode starts when its audio has arrived and the previous decode has finished, and takes
the time it really took here. So a file fed as fast as possible gives the same latencies as
the same file played in real time (on the same computer). A decode that would start while the
previous one is still running is left out (the next one covers its audio). When decoding still
falls more than ``max_lag_s`` behind the audio (a single decode slower than the audio it
covers), the recognizer skips ahead: the audio it has no time for is
not decoded (its pending words are dropped), and :attr:`StreamingRecognizer.status` says so.

Memory is bounded: ``keep_s`` seconds of audio and VAD decisions, one buffer of at most
``max_buffer_s``, and one pending hypothesis, whatever the length of the stream.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import AdapterError, AudioError
from workbench.live.decoders import Hypothesis, step_decoder
from workbench.live.events import CaptionEvent, Word
from workbench.live.policy import LocalAgreement
from workbench.live.vad import FRAME, VoiceActivity

__all__ = ["StreamingRecognizer"]

_RECENT_SKIP_S = 10.0  # the status reports a skip for this many seconds of audio after it


def _frame_edge(sample: int) -> int:
    """The first VAD frame edge at or after ``sample`` (buffers start on one, so frame times and
    sample times agree)."""
    return -(-int(sample) // FRAME) * FRAME


class _Ring:
    """The last ``capacity`` samples of a stream, addressed by absolute sample index."""

    def __init__(self, capacity: int) -> None:
        self.data = np.zeros(capacity, np.float32)
        self.total = 0  # samples written since the stream began

    @property
    def oldest(self) -> int:
        return max(0, self.total - len(self.data))

    def append(self, x: np.ndarray) -> None:
        cap = len(self.data)
        if len(x) >= cap:
            self.data[:] = x[-cap:]
            self.data = np.roll(self.data, (self.total + len(x)) % cap)
        else:
            i = self.total % cap
            k = min(len(x), cap - i)
            self.data[i: i + k] = x[:k]
            self.data[: len(x) - k] = x[k:]
        self.total += len(x)

    def get(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` (must lie within ``[oldest, total]``), as a new array."""
        cap = len(self.data)
        idx = np.arange(start, end) % cap
        return self.data[idx].copy()


class StreamingRecognizer:
    """Partial and committed captions from a stream of audio chunks (see the module docstring).

    Args:
        backend: a base model (:class:`~workbench.models.base.ASRBackend`; Whisper or CTC).
        submodel: a Submodel file (personal model) to apply, or None for the base model alone.
            Its LoRA is merged into the base weights for speed (the backend then serves only
            this speaker until :meth:`close`).
        speaker: with a bank file, whose row to use.
        step_s: seconds of new audio between decodes of the buffer. 1 s (whisper_streaming's default
            chunk): on 32 development phrases of four sample speakers (their training phrases), Whisper
            tiny.en streamed at 30.6 % WER against 27.4 % offline with 1 s steps, 32.5 % with 0.5 s steps
            (median latency before decoding time 0.86 s and 0.51 s); with ``extend_onset`` and a 0.2 s
            preroll, 29.3 % (0.1 s: 39.5 %; without extend_onset, 0.3 s: 30.6 %). Whisper is sensitive
            to the silence before a phrase; these figures are a few words apart on ~150 words.
        pause_s: seconds without voice that end a phrase (everything pending is committed). 0.8 s: people
            with atypical speech pause inside phrases, and a phrase cut at a pause is decoded in pieces,
            without its context; on 40 development phrases of five sample speakers, 0.5 s gave 34.2 % WER
            streamed (32.1 % offline), 0.8 s 28.4 %, at a median latency 0.13 s longer (1.02 s before
            decoding time).
        max_buffer_s: the longest buffer decoded at once (Whisper takes at most 30 s).
        max_lag_s: fall this far behind the audio and the recognizer skips ahead.
        keep_s: seconds of recent audio kept for :meth:`audio` (corrections).
        preroll_s: audio kept before the first voiced frame of a phrase.
        tail_s: audio kept after the last voiced frame when a phrase ends.
        defer_s, defer_short_s: a phrase with less than ``defer_short_s`` seconds of voiced audio ends only after
            ``pause_s + defer_s`` without voice. A phrase's first word alone before a pause ("i i i" for "i",
            "not | what are we need" for "that was a relief") is where streaming lost most words. On the personal
            tiny.en (test phrases, bench_live's streams, decode time left out), 0.6 s and 0.6 s took the
            streamed/offline WER ratio from 1.24 to 1.05 (sim-dysarthria-severe), 1.23 to 1.08 (sim-als-like),
            1.00 to 0.97 (sim-parkinsonian), 0.83 to 0.94 (sim-stutter), the median latency from 0.80-0.95 s to
            0.82-0.96 s and p90 from 1.38-1.87 s to 1.41-1.90 s; with defer_short_s = 1 s, the hypophonic
            parkinsonian speaker's median rose to 1.24 s (most of its phrases have under 1 s of voice). 0: off.
        extend_onset: start a phrase where its sound starts (:meth:`VoiceActivity.sound_start`), not at the
            detector's first voiced frame.
        holdback_s: words ending less than this before the end of the audio are not committed yet
            (the last word may still be being spoken), even when two decodes agree on them.
        vad: options of :class:`~workbench.live.vad.VoiceActivity` (``mode``, ``margin_db``, ...).
        decoder: options of the step decoder (``no_speech_threshold``, ``min_logprob``, ``min_confidence``).
        realtime: False: every decode is taken as instantaneous (events are emitted at the audio time
            of the decode; nothing is ever behind or skipped), for deterministic tests and for
            measuring what the policy costs in words apart from the computer's speed.
        warmup: decode 1 s of quiet once now, so that the first caption is not slowed by one-time set-up
            (not counted in :attr:`compute_s`).

    Example (the built-in model; silence gives no captions)::

        rec = StreamingRecognizer(load_base_model("tiny"))
        events = rec.feed(np.zeros(16000, np.float32)) + rec.finish()   # -> []
    """

    def __init__(self, backend, *, submodel: str | Path | None = None, speaker: str | None = None,
                 step_s: float = 1.0, pause_s: float = 0.8, max_buffer_s: float = 12.0, max_lag_s: float = 2.0,
                 keep_s: float = 60.0, preroll_s: float = 0.2, tail_s: float = 0.3, holdback_s: float = 0.3,
                 extend_onset: bool = True, defer_s: float = 0.6, defer_short_s: float = 0.6, vad: dict | None = None,
                 decoder: dict | None = None, warmup: bool = True, realtime: bool = True) -> None:
        if not 0.05 <= step_s <= 5.0:
            raise ValueError(f"step_s must be between 0.05 and 5 seconds, got {step_s!r}")
        if not step_s < max_buffer_s <= 28.0:
            raise ValueError(f"max_buffer_s must be above step_s and at most 28 s, got {max_buffer_s!r}")
        self.adapted = None
        route = None
        if getattr(backend, "backend", None) is not None and hasattr(backend, "route"):  # an Adapted
            self.adapted, backend = backend, backend.backend
        self.backend = backend
        if submodel is not None:
            route = self._load_submodel(submodel, speaker)
        elif self.adapted is not None and self.adapted.num_speakers > 1:
            raise AdapterError("this personal model is a bank of several speakers; give its file as submodel= "
                               "with speaker= to choose whose rows to use")
        self.step = int(round(step_s * SAMPLE_RATE))
        self.pause_s, self.max_lag_s, self.holdback_s = float(pause_s), float(max_lag_s), float(holdback_s)
        self.realtime = bool(realtime)
        self.max_buffer = int(round(max_buffer_s * SAMPLE_RATE))
        self.preroll = int(round(preroll_s * SAMPLE_RATE))
        self.tail = int(round(tail_s * SAMPLE_RATE))
        self.extend_onset = bool(extend_onset)
        self.defer_s, self.defer_short_s = float(defer_s), float(defer_short_s)
        self._decode = step_decoder(backend, route=route, **(decoder or {}))
        self._forces_prefix = bool(backend.is_seq2seq)
        self._vad_options = {"keep_s": max(keep_s, max_buffer_s + 5.0), **(vad or {})}
        self._ring_samples = int(round(max(keep_s, max_buffer_s + 5.0) * SAMPLE_RATE))
        self._policy = LocalAgreement()
        self._start_stream()
        if warmup:
            quiet = (1e-3 * np.sin(np.arange(SAMPLE_RATE) * 0.05)).astype(np.float32)
            self._decode(quiet, [], np.ones(len(quiet) // FRAME, bool))

    # ------------------------------------------------------------------ setup
    def _start_stream(self) -> None:
        """The state of one stream: recent audio, voice activity, the buffer, the clock and the counters."""
        self._vad = VoiceActivity(**self._vad_options)
        self._ring = _Ring(self._ring_samples)
        self._policy.reset()
        self._buf_start: int | None = None  # absolute sample where the buffer starts; None: nobody speaking
        self._buf_words: list[Word] = []  # words committed from the current buffer (Whisper's forced prefix)
        self._last_decode = 0  # sample count at the last decode
        self._partial = ""
        self._busy_until = 0.0  # the clock (seconds): when the last decode finished
        self._skip_until = 0  # samples before this are not decoded (skipped to catch up)
        self._done_until = 0  # samples before this belong to a phrase already finished (never decoded again)
        self.skipped_s = 0.0
        self._last_skip_at = -np.inf
        self.compute_s = 0.0  # seconds spent decoding (wall clock)
        self.cpu_s = 0.0  # CPU seconds of this process spent in feed()/finish() (all threads)
        self.decodes = 0

    def _load_submodel(self, path: str | Path, speaker: str | None):
        from workbench.adapters import load_submodel

        if self.adapted is not None:
            raise AdapterError("this model already carries a personal adapter; pass the plain base model with "
                               "submodel=, or the adapted model alone")
        adapted, meta = load_submodel(self.backend, path)
        self.adapted = adapted
        if adapted.num_speakers > 1:
            from workbench.workflow.evaluation import bank_row

            row = bank_row(meta, speaker)
            return lambda: adapted.route([row])
        if adapted.config.family == "lora":
            adapted.merge(0)
        return None

    def reset(self) -> None:
        """Start a new stream with the same model: forget the audio, the captions pending and the clock.

        Nothing is committed (call :meth:`finish` first to keep what is pending); the base model and the
        personal adapter stay loaded, so the next :meth:`feed` starts at time 0 without waiting for a load.
        """
        self._start_stream()

    def close(self) -> None:
        """Remove the personal adapter this recognizer loaded (the backend is the base model again)."""
        if self.adapted is not None:
            self.adapted.remove()
            self.adapted = None

    # ------------------------------------------------------------------ public
    @property
    def now_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._ring.total / SAMPLE_RATE

    @property
    def status(self) -> str:
        """``"keeping up"``, or ``"fell behind, skipped 2.1 s"`` for 10 s of audio after a skip."""
        if self.now_s - self._last_skip_at <= _RECENT_SKIP_S:
            return f"fell behind, skipped {self.skipped_s:.1f} s"
        return "keeping up"

    @property
    def rtf(self) -> float:
        """Seconds of decoding per second of audio so far (below 1: faster than real time)."""
        return self.compute_s / self.now_s if self.now_s > 0 else 0.0

    def feed(self, chunk: np.ndarray) -> list[CaptionEvent]:
        """Add ``chunk`` (``(n,)`` float32 mono, 16 kHz, any ``n``) and return the captions it completes."""
        x = np.asarray(chunk)
        if x.ndim != 1:
            raise AudioError(f"a chunk must be mono 1-D audio, got shape {x.shape}; mix it down first")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise AudioError("the audio chunk holds NaN or infinite samples (a broken microphone driver or file); "
                             "captions so far are kept")
        cpu0 = time.process_time()
        events: list[CaptionEvent] = []
        for s in range(0, len(x), self.step):  # a long chunk is taken a step at a time, as if it streamed
            piece = x[s: s + self.step]
            self._ring.append(piece)
            self._vad.process(piece)
            events += self._advance()
        self.cpu_s += time.process_time() - cpu0
        return events

    def finish(self) -> list[CaptionEvent]:
        """The end of the stream: commit what is pending (decoded once more) and clear the partial caption."""
        cpu0 = time.process_time()
        events: list[CaptionEvent] = []
        if self._buf_start is not None:
            events += self._final(self._ring.total)
        self.cpu_s += time.process_time() - cpu0
        return events

    def audio(self, start_s: float, end_s: float) -> np.ndarray:
        """The audio ``[start_s, end_s)`` (seconds since the stream began), ``(n,)`` float32, for a correction.

        Raises:
            AudioError: the span is empty, or older than the recent audio kept.
        """
        start, end = int(round(start_s * SAMPLE_RATE)), int(round(end_s * SAMPLE_RATE))
        end = min(end, self._ring.total)
        start = max(0, start)
        if end <= start:
            raise AudioError(f"no audio between {start_s:.2f} s and {end_s:.2f} s of this stream")
        if start < self._ring.oldest:
            kept = len(self._ring.data) / SAMPLE_RATE
            raise AudioError(f"that line is too old: only the last {kept:.0f} s of audio are kept for corrections; "
                             "correct a more recent line")
        return self._ring.get(start, end)

    # ------------------------------------------------------------------ the state machine
    def _advance(self) -> list[CaptionEvent]:
        total = self._ring.total
        if self._buf_start is None:
            onset = self._vad.onset()
            if onset is None or total <= self._skip_until:
                return []
            first = self._vad.sound_start(onset) if self.extend_onset else onset
            self._buf_start = _frame_edge(max(self._ring.oldest, self._skip_until, self._done_until,
                                              first * FRAME - self.preroll))
            self._last_decode = total
            return []
        silent = self._vad.silent_for()
        if silent >= self.pause_s and (silent >= self.pause_s + self.defer_s or not self._short_phrase()):
            # the phrase ended: decode to the pause, commit it all
            end = min(total, (self._vad.last_voiced + 1) * FRAME + self.tail)
            return self._final(end)
        events: list[CaptionEvent] = []
        # a step decode is due after step_s of new audio, unless the speaker has stopped (the decode at
        # the pause will take it all) or the last decode is still running (the next one covers its audio)
        if total - self._last_decode >= self.step and self._vad.silent_for() < self.holdback_s:
            lag = self._busy_until - total / SAMPLE_RATE
            if lag > self.max_lag_s:
                return self._skip(lag)
            if lag <= 0:
                events = self._step(total)
        if total - self._buf_start > self.max_buffer:  # no pause for a long time: never decode more than this
            events += self._trim(total)
        return events

    def _short_phrase(self) -> bool:
        """Whether this phrase so far holds less than ``defer_short_s`` of voiced audio (a lone "I ..."):
        its end waits ``defer_s`` longer, so that the words after the pause are decoded with it."""
        if self.defer_s <= 0:
            return False
        voiced = self._vad.voiced(self._buf_start // FRAME, self._vad.frames)
        return int(voiced.sum()) * FRAME / SAMPLE_RATE < self.defer_short_s

    def _run(self, end: int) -> tuple[Hypothesis, float]:
        """Decode the buffer up to sample ``end``; returns the hypothesis (absolute times) and the clock after it."""
        start = self._buf_start
        wav = self._ring.get(start, end)
        voiced = self._vad.voiced(start // FRAME, -(-end // FRAME))  # the buffer starts on a frame edge
        t0 = time.perf_counter()
        hyp = self._decode(wav, [w.text for w in self._buf_words], voiced)
        dt = time.perf_counter() - t0
        self.compute_s += dt
        self.decodes += 1
        self._busy_until = max(end / SAMPLE_RATE, self._busy_until) + (dt if self.realtime else 0.0)
        self._last_decode = end
        offset = start / SAMPLE_RATE
        words = [Word(w.text, round(w.start_s + offset, 3), round(w.end_s + offset, 3)) for w in hyp.words]
        return Hypothesis(words, hyp.speech, hyp.score), self._busy_until

    def _tail(self, hyp: Hypothesis) -> list[Word]:
        """The words of ``hyp`` after those already committed from this buffer."""
        if not hyp.speech:
            return []
        if self._forces_prefix:
            return hyp.words[len(self._buf_words):]
        if not self._buf_words:
            return hyp.words
        edge = self._buf_words[-1].end_s
        return [w for w in hyp.words if (w.start_s + w.end_s) / 2 > edge]

    def _step(self, end: int) -> list[CaptionEvent]:
        hyp, clock = self._run(end)
        committed, _ = self._policy.update(self._tail(hyp), stable_until=end / SAMPLE_RATE - self.holdback_s)
        return self._emit(committed, clock)

    def _final(self, end: int) -> list[CaptionEvent]:
        events: list[CaptionEvent] = []
        self._done_until = max(self._done_until, end)
        if end > self._buf_start:
            hyp, clock = self._run(end)
            tail = self._tail(hyp)
            self._policy.reset()
            events = self._emit(tail, clock)
        if self._partial:
            events += self._emit([], self._busy_until)
        self._close_buffer()
        return events

    def _trim(self, total: int) -> list[CaptionEvent]:
        """The buffer is too long: start it after its last committed word (or commit what is pending)."""
        events: list[CaptionEvent] = []
        if not self._buf_words:
            events = self._emit(self._policy.flush(), self._busy_until)
        cut = int(round(self._buf_words[-1].end_s * SAMPLE_RATE)) if self._buf_words else total
        self._buf_start = min(_frame_edge(max(cut, self._buf_start)), total // FRAME * FRAME)
        self._buf_words = []
        return events

    def _skip(self, lag: float) -> list[CaptionEvent]:
        """Too far behind: drop the pending words and the audio there is no time for."""
        self._skip_until = int(round(self._busy_until * SAMPLE_RATE))
        self.skipped_s += lag
        self._last_skip_at = self._ring.total / SAMPLE_RATE
        self._policy.reset()
        events = self._emit([], self._busy_until) if self._partial else []
        self._close_buffer()
        return events

    def _close_buffer(self) -> None:
        self._buf_start = None
        self._buf_words = []
        self._policy.reset()

    def _emit(self, committed: list[Word], clock: float) -> list[CaptionEvent]:
        """Events for the words committed now and for a changed partial line (audio times; at ``clock``)."""
        events = []
        if committed:
            self._buf_words += committed
            events.append(CaptionEvent("commit", " ".join(w.text for w in committed), committed[0].start_s,
                                       committed[-1].end_s, round(clock, 3), tuple(committed)))
        pending = self._policy.pending
        text = " ".join(w.text for w in pending)
        if text != self._partial:
            self._partial = text
            start = pending[0].start_s if pending else (committed[-1].end_s if committed else self.now_s)
            end = pending[-1].end_s if pending else start
            events.append(CaptionEvent("partial", text, start, end, round(clock, 3)))
        return events

    def __enter__(self) -> StreamingRecognizer:
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.close()
