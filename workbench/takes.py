"""The take protocol of the browser recorder, with no widget: numbered chunks in, one take out.

The page (``workbench/ui/static/recorder.js``) records with the browser's
microphone, resamples to 16 kHz mono int16 and sends one message per second of
audio (32 KB), numbered. :class:`TakeProtocol` is the kernel (or server) side of
that conversation, the same for the anywidget in Jupyter
(:class:`workbench.ui.recorder.BrowserRecorder`) and the Panel app
(:class:`workbench.app_pages.recorder.PanelRecorder`); each view only carries
the messages. The messages, as dicts (audio only in the chunks' buffers)::

    {"type": "start", "take", "rate", "input_rate"}     rate: Hz of the chunks (16000)
    {"type": "chunk", "take", "seq", "n"} + 1 buffer    seq: 0, 1, 2, ...; little-endian int16
    {"type": "stop",  "take", "chunks", "samples", "reason"}
    {"type": "error", "code", "message"}                the page could not record
    answer: {"type": "result", "take", "ok", "message", "seconds"}

:class:`ChunkAssembler` puts the chunks of one take back together; it is
dropped as soon as the take is delivered, so no audio lingers. A take is
checked once: when a callback saves it (a prompt session, the app's Record page)
it returns the :class:`~workbench.audio.QualityReport` that
:meth:`workbench.corpus.SpeakerCorpus.add_take` decided, and the page shows that
report; only a take nobody saved is checked here.

>>> asm = ChunkAssembler("take1")
>>> asm.add(1, b"\\x00\\xc0"); asm.add(0, b"\\x00\\x40")
True
True
>>> asm.finish(n_chunks=2).tolist()
[0.5, -0.5]
>>> sent = []
>>> protocol = TakeProtocol(sent.append)
>>> protocol.handle_message({"type": "start", "take": "t", "rate": 16000})
>>> protocol.handle_message({"type": "chunk", "take": "t", "seq": 0}, [bytes(3200)])
>>> protocol.handle_message({"type": "stop", "take": "t", "chunks": 1, "samples": 1600}).duration_s
0.1
>>> sent[-1]["ok"], sent[-1]["seconds"]
(False, 0.1)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from workbench._deprecated import renamed_fields, renamed_keywords
from workbench.audio import QualityReport, Recording, pcm16_to_float
from workbench.constants import SAMPLE_RATE
from workbench.errors import AudioError, WorkbenchError

__all__ = [
    "Buffer",
    "ChunkAssembler",
    "ErrorCallback",
    "Reply",
    "TakeCallback",
    "TakeProtocol",
    "hand_over",
    "received_message",
]

Buffer = bytes | bytearray | memoryview
"""Bytes as a comm or an upload delivers them."""
Reply = Callable[[dict[str, object]], object]
"""Sends one answer to the page (a JSON-safe dict, no buffers)."""
TakeCallback = Callable[[Recording], object]
"""Gets every take; one that saves it returns the :class:`~workbench.audio.QualityReport` it decided."""
ErrorCallback = Callable[[str, str], object]
"""Gets ``(code, message)`` when the browser or the transfer fails."""


def _pieces(seqs: Sequence[int]) -> str:
    """0-based chunk numbers as 1-based words: [3] -> 'piece 4', [1, 2] -> 'pieces 2, 3'."""
    shown = ", ".join(str(s + 1) for s in seqs[:8]) + (", ..." if len(seqs) > 8 else "")
    return f"piece {shown}" if len(seqs) == 1 else f"pieces {shown}"


class ChunkAssembler:
    """Put one recording back together from numbered chunks of 16-bit PCM.

    Chunks may arrive in any order; an identical duplicate is ignored (counted in
    :attr:`duplicates`); a missing chunk, a duplicate with different audio or a
    wrong total is an :class:`~workbench.errors.AudioError` with a plain message.

    Args:
        take: id of the recording the chunks belong to (the browser's ``take``).
        sample_rate: rate of the samples in Hz (16000 from the browser recorder).
        max_s: refuse more audio than this (``None``: no limit).
    """

    @renamed_keywords(max_seconds="max_s")
    def __init__(self, take: str = "", *, sample_rate: int = SAMPLE_RATE, max_s: float | None = 600.0) -> None:
        self.take = take
        self.sample_rate = int(sample_rate)
        self.max_samples = None if max_s is None else round(max_s * self.sample_rate)
        self.duplicates = 0
        self._chunks: dict[int, bytes] = {}
        self._n_bytes = 0

    @property
    def n_samples(self) -> int:
        """Samples received so far (all chunks, gaps or not)."""
        return self._n_bytes // 2

    @property
    def n_chunks(self) -> int:
        """Distinct chunks received so far."""
        return len(self._chunks)

    def add(self, seq: object, data: Buffer) -> bool:
        """Store chunk ``seq`` (0, 1, 2, ...) of little-endian int16 samples.

        Returns:
            True if stored, False for an identical duplicate.
        """
        if isinstance(seq, bool) or not isinstance(seq, (int, np.integer)) or seq < 0:
            raise AudioError(f"A piece of the recording has an invalid number ({seq!r}); record again.")
        seq = int(seq)
        buf = bytes(data)
        if len(buf) % 2:
            raise AudioError(
                f"Piece {seq + 1} of the recording is cut off ({len(buf)} bytes; 16-bit audio needs an even number). "
                "Record again."
            )
        old = self._chunks.get(seq)
        if old is not None:
            if old == buf:
                self.duplicates += 1
                return False
            raise AudioError(
                f"Piece {seq + 1} of the recording arrived twice with different sound, so the take is mixed up. "
                "Record again."
            )
        if self.max_samples is not None and (self._n_bytes + len(buf)) // 2 > self.max_samples:
            raise AudioError(
                f"The recording is longer than the {self.max_samples / self.sample_rate:.0f} s limit. "
                "Record shorter takes (one prompt each)."
            )
        self._chunks[seq] = buf
        self._n_bytes += len(buf)
        return True

    def missing(self, n_chunks: int | None = None) -> list[int]:
        """Chunk numbers not received among ``0 .. n_chunks - 1`` (default: up to the highest seen)."""
        total = (max(self._chunks) + 1 if self._chunks else 0) if n_chunks is None else int(n_chunks)
        return [i for i in range(total) if i not in self._chunks]

    def finish(self, *, n_chunks: int | None = None, n_samples: int | None = None) -> np.ndarray:
        """The whole recording, ``(n,)`` float32 in [-1, 1) at :attr:`sample_rate`.

        Args:
            n_chunks: how many chunks the sender says it sent (checks for lost ones at the end).
            n_samples: how many samples the sender says it sent.
        """
        if n_chunks is not None:
            extra = sorted(s for s in self._chunks if s >= n_chunks)
            if extra:
                raise AudioError(
                    f"The recording has more pieces than were sent ({_pieces(extra)} of {n_chunks}): "
                    "two takes got mixed up. Record again."
                )
        gone = self.missing(n_chunks)
        if gone:
            total = n_chunks if n_chunks is not None else max(self._chunks) + 1
            raise AudioError(
                f"Part of the recording did not reach Python ({_pieces(gone)} of {total} missing), perhaps "
                "because the connection dropped. Record again."
            )
        data = b"".join(self._chunks[i] for i in sorted(self._chunks))
        wav = pcm16_to_float(data)
        if n_samples is not None and wav.size != int(n_samples):
            raise AudioError(
                f"The recording arrived incomplete ({wav.size} of {int(n_samples)} samples). Record again."
            )
        return wav


def received_message(take: Recording) -> str:
    """What a recorder says about a take whose quality message is shown elsewhere (a prompt session)."""
    return f"Received {take.duration_s:.1f} s: see the message below."


def hand_over(take: Recording, callbacks: Iterable[TakeCallback]) -> QualityReport | None:
    """Call every callback with ``take``; the report the last one that saved it returned, else None.

    A callback that saves the take (into a :class:`~workbench.corpus.SpeakerCorpus`) returns the
    :class:`~workbench.audio.QualityReport` the corpus decided, so a recorder shows that report
    instead of checking the take again. Errors of a callback propagate.
    """
    decided = None
    for fn in list(callbacks):
        result = fn(take)
        if isinstance(result, QualityReport):
            decided = result
    return decided


@renamed_fields(max_seconds="max_s")  # the old name works, with a warning, until the next release
class TakeProtocol:
    """The kernel side of the browser recorder: messages in, a checked take and an answer out.

    Args:
        reply: sends an answer to the page, ``reply(content)``; None: answers go nowhere
            (a closed page). The views pass their channel (a Jupyter comm, a Panel message).
        max_s: the longest take the page records; 5 s more are accepted (the page's clock).

    Attributes:
        recording: the last take received (:class:`~workbench.audio.Recording`, 16 kHz), kernel memory only.
        report: its :class:`~workbench.audio.QualityReport` (the one the saving callback returned).
        error: the last problem (browser or transfer) in plain language, else None.
        input_rate: the page's AudioContext rate in Hz, for diagnostics.
        show_quality: say what the quality check found in the answer (False: a caller such as a
            prompt session shows it itself, and the page only says the take arrived).
        assembler: the chunks of the take being received, None between takes.
    """

    def __init__(self, reply: Reply | None = None, *, max_s: float = 60.0) -> None:
        self.reply = reply
        self.max_s = float(max_s)
        self.recording: Recording | None = None
        self.report: QualityReport | None = None
        self.error: str | None = None
        self.input_rate: float | None = None
        self.show_quality = True
        self.assembler: ChunkAssembler | None = None
        self._lock = threading.Lock()
        self._callbacks: list[TakeCallback] = []
        self._error_callbacks: list[ErrorCallback] = []

    def on_recording(self, fn: TakeCallback) -> TakeCallback:
        """Call ``fn(recording)`` with every take received. Returns ``fn``."""
        self._callbacks.append(fn)
        return fn

    def on_error(self, fn: ErrorCallback) -> ErrorCallback:
        """Call ``fn(code, message)`` when the browser or the transfer fails. Returns ``fn``."""
        self._error_callbacks.append(fn)
        return fn

    @property
    def receiving(self) -> bool:
        """True while chunks of a take are being collected."""
        return self.assembler is not None

    def close(self) -> None:
        """Forget the callbacks and the channel: a late message from a closed page goes nowhere."""
        self.reply = None
        self._callbacks.clear()
        self._error_callbacks.clear()
        with self._lock:
            self.assembler = None

    def handle_message(self, content: object, buffers: Sequence[Buffer] = ()) -> Recording | None:
        """Handle one message from the page (what the channel delivers; tests call it directly).

        Returns:
            The finished :class:`~workbench.audio.Recording` on ``"stop"``, else None.
        """
        if not isinstance(content, dict):
            return None
        kind = content.get("type")
        take = str(content.get("take", ""))
        if kind == "start":
            rate = content.get("rate")
            with self._lock:
                self.error = None
                self.input_rate = content.get("input_rate")
                self.assembler = ChunkAssembler(take, sample_rate=SAMPLE_RATE, max_s=self.max_s + 5)
            if rate != SAMPLE_RATE:
                self._fail("transfer", f"The browser sent audio at {rate!r} Hz instead of {SAMPLE_RATE} Hz. "
                           "Reload the page (the recorder code is out of date) and record again.", take)
            return None
        if kind == "chunk":
            with self._lock:
                asm = self.assembler
                if asm is None or asm.take != take:
                    return None  # a late piece of an abandoned take
                try:
                    if not buffers:
                        raise AudioError(f"Piece {content.get('seq')!r} of the recording arrived without sound. "
                                         "Record again.")
                    asm.add(content.get("seq"), buffers[0])
                except AudioError as err:
                    self.assembler = None
                    error: AudioError | None = err
                else:
                    error = None
            if error is not None:
                self._fail("transfer", str(error), take)
            return None
        if kind == "stop":
            with self._lock:
                asm, self.assembler = self.assembler, None  # the chunks go once the take is built
            if asm is None or asm.take != take:
                return None
            try:
                wav = asm.finish(n_chunks=content.get("chunks"), n_samples=content.get("samples"))
            except AudioError as err:
                self._fail("transfer", str(err), take)
                return None
            return self._deliver(Recording(wav, SAMPLE_RATE), take, content.get("reason"))
        if kind == "error":
            message = str(content.get("message") or "The browser could not record.")
            self._fail(str(content.get("code", "other")), message, take, reply=False)
        return None

    def _deliver(self, rec: Recording, take: str, reason: object) -> Recording:
        """Hand the take to the callbacks, then answer the page with the report that decided it."""
        self.recording, self.report = rec, None
        message: str | None = None
        try:
            self.report = hand_over(rec, self._callbacks)
        except WorkbenchError as err:  # e.g. no consent yet: the person sees why it was not saved
            message = str(err)
        if self.report is None:
            self.report = rec.quality()  # nobody saved it: the recorder's own check
        ok = message is None and self.report.ok
        if message is None:
            message = self.report.message if self.show_quality else received_message(rec)
            if reason == "limit":
                message = f"Stopped at the {rec.duration_s:.0f} s limit. " + message
        self._send({"type": "result", "take": take, "ok": bool(ok), "message": message,
                    "seconds": round(rec.duration_s, 3)})
        return rec

    def _fail(self, code: str, message: str, take: str, *, reply: bool = True) -> None:
        self.error = message
        if reply:
            self._send({"type": "result", "take": take, "ok": False, "message": message})
        for fn in list(self._error_callbacks):
            fn(code, message)

    def _send(self, content: dict[str, object]) -> None:
        if self.reply is not None:
            self.reply(content)
