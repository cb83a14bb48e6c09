"""Live captions in a view: caption lines, say it back, corrections, and the audio that feeds them.

The recognizer is the core's (:mod:`workbench.live`); this module only turns its events into
what a person reads and acts on, for the notebook widget here and the app's Live captions page
(:mod:`workbench.app_pages.live`). Nothing here imports a UI package at module level.

- :class:`LiveCaptions`: committed words grouped into lines (a new line after a pause), the
  partial line, *say it back* (:func:`workbench.live.voice.say`) and *correct*
  (:func:`workbench.live.save_correction` with the line's audio); one lock, so a decoding thread
  and a button may use it at once.
- :class:`LiveFeeder`: chunks in from any thread (a microphone callback, a websocket), decoding in
  one worker thread; a backlog is decoded in one call, so the recognizer's own skip-ahead applies.
- :class:`BrowserStream`: the browser recorder's messages (``workbench/ui/static/recorder.js``:
  start, numbered 16-bit chunks, stop, error) turned into chunks for a :class:`LiveFeeder`.
- :func:`stream_file`: a recording streamed through, faster than real time (demos, tests, CI).
- :func:`live_widget`: the notebook view (kernel or browser microphone, Say it back, Correct).
"""

from __future__ import annotations

import dataclasses
import html
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import TrainingBusyError, WorkbenchError

__all__ = [
    "BrowserStream",
    "CaptionLine",
    "LiveCaptions",
    "LiveFeeder",
    "MIC_LOST_MESSAGE",
    "live_widget",
    "stream_file",
]

MIC_LOST_MESSAGE = ("The microphone stopped (was it unplugged, or taken by another program?). The captions so far "
                    "are kept; plug it back in and press Start to go on.")
_PAD_BEFORE_S, _PAD_AFTER_S = 0.2, 0.3  # word times are estimates: a correction's audio keeps a margin

CAPTION_CSS = """
.wb-captions { font-size: 2.1rem; line-height: 1.35; background: #fcfcfd; border: 2px solid #2a6f97;
  border-radius: 10px; padding: 14px 20px; min-height: 7.5em; max-width: 46em; color: #111; }
.wb-captions .wb-line { margin: 0.15em 0; }
.wb-captions .wb-line.wb-old { font-size: 0.7em; color: #495057; }
.wb-captions .wb-num { font-size: 0.45em; color: #868e96; vertical-align: middle; margin-right: 0.5em; }
.wb-captions .wb-line.wb-fixed { color: #1b5e20; }
.wb-captions .wb-tag { font-size: 0.4em; color: #1b5e20; border: 1px solid #1b5e20; border-radius: 4px;
  padding: 0 4px; margin-left: 0.6em; vertical-align: middle; font-style: normal; }
.wb-captions .wb-partial { color: #6c757d; font-style: italic; }
.wb-captions .wb-empty { color: #6c757d; font-size: 0.6em; }
"""


@dataclasses.dataclass
class CaptionLine:
    """One line of committed captions.

    Attributes:
        number: 1, 2, 3, ... in the order heard (stable while older lines scroll away).
        text: the committed words, as recognized (normalized, lower case).
        start_s, end_s: audio times of its first and last word, seconds since the recognizer began.
        corrected: the text saved as a correction, or None.
        take: the saved take's id, or None.
    """

    number: int
    text: str
    start_s: float
    end_s: float
    corrected: str | None = None
    take: str | None = None

    @property
    def shown(self) -> str:
        """What the line says now (the correction once there is one)."""
        return self.corrected if self.corrected is not None else self.text


class LiveCaptions:
    """Caption lines from a recognizer's events, and the two things a person does with them.

    Args:
        recognizer: a :class:`workbench.live.StreamingRecognizer` (``feed``, ``finish``, ``audio``, ``status``).
        description: which model captions and why (:func:`workbench.live.open_recognizer`'s second value).
        speaker_dir: the speaker folder corrections are saved to (None: corrections are refused).
        busy: ``fn() -> str | None``, why the folder is busy with a training run (the app's own runs).
        line_gap_s: a pause between phrases this long or longer starts a new line.
        max_line_words: a line never grows past this many words.
        max_lines: lines kept (older ones are dropped; their audio is gone by then anyway).
        voice: the voice of :meth:`say_back` (see :func:`workbench.live.voice.say`).
    """

    def __init__(self, recognizer: Any, description: str = "", *, speaker_dir: str | Path | None = None,
                 busy: Callable[[], str | None] | None = None, line_gap_s: float = 0.3, max_line_words: int = 12,
                 max_lines: int = 200, voice: str = "auto") -> None:
        self.recognizer = recognizer
        self.description = description
        self.speaker_dir = Path(speaker_dir) if speaker_dir is not None else None
        self.busy = busy
        self.line_gap_s, self.max_line_words, self.max_lines = float(line_gap_s), int(max_line_words), int(max_lines)
        self.voice = voice
        self.lines: list[CaptionLine] = []
        self.partial = ""
        self.message = ""  # the last plain message for the person (problems and results)
        self.ok: bool | None = None
        self.corrections = 0  # saved in this session
        self._closed_phrase = True  # the last partial was empty: the next commit may start a line
        self._count = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ captions
    def add(self, events: Sequence[Any]) -> None:
        """Take the recognizer's events: commits extend or start lines; partials replace the unstable text."""
        with self._lock:
            for e in events:
                if e.kind == "partial":
                    self.partial = e.text
                    if not e.text:  # everything heard is committed: the phrase may have ended
                        self._closed_phrase = True
                    continue
                if e.kind != "commit" or not e.text:
                    continue
                last = self.lines[-1] if self.lines else None
                gap = e.start_s - last.end_s if last is not None else np.inf
                new_line = (last is None or last.corrected is not None or gap >= 1.0
                            or (self._closed_phrase and gap >= self.line_gap_s)
                            or len(last.text.split()) + len(e.text.split()) > self.max_line_words)
                if new_line:
                    self._count += 1
                    self.lines.append(CaptionLine(self._count, e.text, e.start_s, e.end_s))
                    del self.lines[:-self.max_lines]
                else:
                    last.text, last.end_s = f"{last.text} {e.text}", e.end_s
                self._closed_phrase = False

    def feed(self, chunk: np.ndarray) -> list[Any]:
        """Decode ``chunk`` (``(n,)`` float32, 16 kHz) and take its events; returns them."""
        events = self.recognizer.feed(chunk)
        self.add(events)
        return events

    def finish(self) -> list[Any]:
        """End of the stream: the pending words are committed."""
        events = self.recognizer.finish()
        self.add(events)
        return events

    @property
    def status(self) -> str:
        """The recognizer's state in words: "keeping up", or how much it skipped to catch up."""
        return str(getattr(self.recognizer, "status", ""))

    @property
    def text(self) -> str:
        """Every line kept, one per line (what a transcript download would hold)."""
        with self._lock:
            return "\n".join(line.shown for line in self.lines)

    def line(self, number: int | None = None) -> CaptionLine:
        """Line ``number`` (None: the last committed line).

        Raises:
            WorkbenchError: there is no such line (yet, or any more).
        """
        with self._lock:
            if not self.lines:
                raise WorkbenchError("There is no committed caption yet: press Start and speak, then try again.")
            if number is None:
                return self.lines[-1]
            for line in self.lines:
                if line.number == number:
                    return line
        raise WorkbenchError(f"Line {number} is no longer on screen. Pick one of the recent lines.")

    def _say(self, text: str, ok: bool | None) -> None:
        self.message, self.ok = text, ok

    # ------------------------------------------------------------------ actions
    def say_back(self, number: int | None = None, *, speed: float = 1.0) -> tuple[np.ndarray, int, str]:
        """Speak a committed line (default: the last) in the clear offline voice.

        Returns:
            ``(waveform, sample_rate, text)``: ``(n,)`` float32 and its rate in Hz.

        Raises:
            WorkbenchError: no line yet, no voice installed (with the install line), or the voice failed.
        """
        from workbench.live.voice import say

        text = self.line(number).shown
        wave, rate = say(text, voice=self.voice, speed=speed)
        return wave, rate, text

    def correct(self, number: int, text: str) -> Any:
        """Save what line ``number`` should have said, with its audio, as a take from use.

        The line shows the correction afterwards. Nothing is written when the text has no words,
        a training run is using the folder, or the line's audio is no longer kept; the message
        says which (and the line stays as it was, so the correction can be saved again).

        Returns:
            The saved :class:`~workbench.corpus.Utterance` (its status says whether the quality
            check kept it for training).
        """
        from workbench.live import save_correction

        line = self.line(number)
        if self.speaker_dir is None:
            raise WorkbenchError("Open a speaker first: corrections are saved to the speaker's folder.")
        busy = self.busy() if self.busy is not None else None
        if busy:
            raise TrainingBusyError(f"The correction was not saved: {busy}. Save it again when the training has "
                                    "finished; the caption stays on screen.")
        now = float(getattr(self.recognizer, "now_s", line.end_s + _PAD_AFTER_S))
        audio = self.recognizer.audio(max(0.0, line.start_s - _PAD_BEFORE_S), min(now, line.end_s + _PAD_AFTER_S))
        utt = save_correction(self.speaker_dir, text, audio, SAMPLE_RATE, caption=line.text)
        with self._lock:
            line.corrected, line.take = " ".join(str(text).split()), utt.utt_id
            self.corrections += 1
        if utt.status == "ok":
            self._say(f"Saved line {line.number} as a take from use: \u201c{line.corrected}\u201d. The next "
                      "personalization learns from it.", True)
        else:
            report = getattr(utt, "quality_report", None)
            self._say(f"Line {line.number} was saved, but the quality check keeps it out of training: "
                      f"{getattr(report, 'message', utt.status)}", False)
        return utt

    # ------------------------------------------------------------------ view
    def html(self, *, shown: int = 6) -> str:
        """The captions as HTML (escaped): the last ``shown`` lines, newest largest, then the partial line."""
        with self._lock:
            lines, partial = list(self.lines[-shown:]), self.partial
        if not lines and not partial:
            return ("<div class='wb-captions' role='log' aria-live='polite'><div class='wb-empty'>Captions appear "
                    "here as the words are recognized.</div></div>")
        parts = []
        for i, line in enumerate(lines):
            old = " wb-old" if i < len(lines) - 2 else ""
            fixed = " wb-fixed" if line.corrected is not None else ""
            words = html.escape(line.shown[:1].upper() + line.shown[1:])
            parts.append(f"<div class='wb-line{old}{fixed}' data-line='{line.number}'>"
                         f"<span class='wb-num'>{line.number}</span>{words}"
                         f"{'<span class=wb-tag>corrected</span>' if fixed else ''}</div>")
        if partial:
            parts.append(f"<div class='wb-line wb-partial'>{html.escape(partial)}\u2026</div>")
        return "<div class='wb-captions' role='log' aria-live='polite'>" + "".join(parts) + "</div>"


class LiveFeeder:
    """Audio chunks in from any thread; one worker thread decodes them into ``captions``.

    Args:
        captions: the :class:`LiveCaptions` to feed.
        on_update: ``fn()`` after each decode (from the worker thread): the view redraws.
        max_backlog_s: audio queued beyond this is dropped (and said), so memory stays bounded
            even if decoding stalls.
    """

    _END = object()

    def __init__(self, captions: LiveCaptions, on_update: Callable[[], Any] | None = None, *,
                 max_backlog_s: float = 30.0) -> None:
        self.captions = captions
        self.on_update = on_update
        self.max_backlog = int(max_backlog_s * SAMPLE_RATE)
        self.dropped_s = 0.0
        self.heard_s = 0.0
        self._queue: queue.Queue = queue.Queue()
        self._queued = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="workbench-live-captions", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def put(self, chunk: np.ndarray) -> None:
        """Queue ``(n,)`` float32 samples at 16 kHz (never blocks)."""
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        with self._lock:
            if self._queued + x.size > self.max_backlog:
                self.dropped_s += x.size / SAMPLE_RATE
                return
            self._queued += x.size
        self._queue.put(x)

    def end(self) -> None:
        """No more audio: the worker commits what is pending, updates once more and stops."""
        self._queue.put(self._END)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish (after :meth:`end`); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _work(self) -> None:
        done = False
        while not done:
            items = [self._queue.get()]
            while True:  # a backlog is decoded at once: the recognizer skips ahead if it must
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            chunks = [x for x in items if x is not self._END]
            done = len(chunks) < len(items)
            try:
                if chunks:
                    audio = np.concatenate(chunks)
                    self.heard_s += audio.size / SAMPLE_RATE
                    self.captions.feed(audio)
                if done:
                    self.captions.finish()
            except WorkbenchError as err:  # e.g. a broken chunk: say it, keep the captions, go on
                self.captions._say(str(err), False)
            finally:  # audio counts against the backlog until it is decoded, not only while it waits
                with self._lock:
                    self._queued -= sum(x.size for x in chunks)
            if self.dropped_s:
                self.captions._say(f"The computer could not keep up: {self.dropped_s:.1f} s of audio were skipped.",
                                   False)
            if self.on_update is not None:
                self.on_update()


class BrowserStream:
    """The browser recorder's messages (start, numbered chunks, stop, error) as a live stream.

    The same messages as a take (:mod:`workbench.takes`), but each chunk goes on at once.

    Args:
        start: ``fn() -> LiveFeeder | None`` called when the page starts the microphone (None: refused,
            e.g. the model is still loading; the chunks are then ignored).
        reply: sends an answer to the page (its status line), ``reply(content)``.
        on_error: ``fn(code, message)`` when the page could not use the microphone.
        on_stop: ``fn(reason)`` after a stop (``"button"``, ``"limit"``, ``"ended"``: the microphone
            went away).
    """

    def __init__(self, start: Callable[[], LiveFeeder | None], reply: Callable[[dict], Any] | None = None, *,
                 on_error: Callable[[str, str], Any] | None = None,
                 on_stop: Callable[[str], Any] | None = None) -> None:
        self.start, self.reply, self.on_error, self.on_stop = start, reply, on_error, on_stop
        self.feeder: LiveFeeder | None = None
        self.take = ""
        self.gaps = 0
        self.max_s = 0.0  # set by the Panel recorder it replaces; the page enforces its own limit
        self._next = 0

    def close(self) -> None:
        """The page is gone: end the stream, answer nobody."""
        self.reply = self.on_error = self.on_stop = None
        if self.feeder is not None:
            self.feeder.end()
            self.feeder = None

    def handle_message(self, content: object, buffers: Sequence[bytes] = ()) -> None:
        from workbench.audio import pcm16_to_float

        if not isinstance(content, dict):
            return
        kind, take = content.get("type"), str(content.get("take", ""))
        if kind == "start":
            if self.feeder is not None:
                self.feeder.end()
            self.take, self._next, self.gaps = take, 0, 0
            if content.get("rate") != SAMPLE_RATE:
                self._answer(False, f"The browser sent audio at {content.get('rate')!r} Hz instead of {SAMPLE_RATE} "
                             "Hz. Reload the page (its code is out of date) and start again.")
                self.feeder = None
                return
            self.feeder = self.start()
        elif kind == "chunk":
            if self.feeder is None or take != self.take or not buffers or len(buffers[0]) % 2:
                return
            seq = content.get("seq")
            if isinstance(seq, int) and seq != self._next:
                self.gaps += 1  # a lost piece: the captions go on (a live stream cannot wait for it)
            self._next = (seq if isinstance(seq, int) else self._next) + 1
            self.feeder.put(pcm16_to_float(bytes(buffers[0])))
        elif kind == "stop":
            if take != self.take or self.feeder is None:
                return
            feeder, self.feeder = self.feeder, None
            feeder.end()
            reason = str(content.get("reason") or "button")
            if reason == "ended":
                self._answer(False, MIC_LOST_MESSAGE)
            else:
                note = f" {self.gaps} piece(s) of audio did not arrive." if self.gaps else ""
                self._answer(True, f"Captions stopped after {feeder.heard_s:.0f} s.{note} Press Start to go on.")
            if self.on_stop is not None:
                self.on_stop(reason)
        elif kind == "error":
            if self.on_error is not None:
                self.on_error(str(content.get("code", "other")), str(content.get("message") or ""))

    def _answer(self, ok: bool, message: str) -> None:
        if self.reply is not None:
            self.reply({"type": "result", "take": self.take, "ok": ok, "message": message})


def stream_file(captions: LiveCaptions, wav: np.ndarray, *, chunk_s: float = 0.5, realtime: float = 0.0,
                on_update: Callable[[], Any] | None = None) -> LiveCaptions:
    """Stream a recording (``(n,)`` float32, 16 kHz) through ``captions`` in ``chunk_s`` pieces, then finish.

    Args:
        realtime: 1.0 plays it in real time, 0 (default) as fast as the computer decodes, 4.0 four
            times faster than real time.
        on_update: ``fn()`` after each piece (a view redraws).
    """
    step = max(1, int(round(chunk_s * SAMPLE_RATE)))
    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    t0 = time.perf_counter()
    for i in range(0, x.size, step):
        captions.feed(x[i:i + step])
        if on_update is not None:
            on_update()
        if realtime > 0:
            time.sleep(max(0.0, t0 + (i + step) / SAMPLE_RATE / realtime - time.perf_counter()))
    captions.finish()
    if on_update is not None:
        on_update()
    return captions


# --------------------------------------------------------------------------- #
# The notebook view
# --------------------------------------------------------------------------- #


_MIC_SILENT_S = 3.0  # no block from an open kernel stream for this long: the microphone went away


def _kernel_stream(feeder: LiveFeeder, device: int | str | None, stream_factory: Callable[..., Any] | None,
                   seen: dict[str, float]) -> Any:
    """An open input stream of the kernel's microphone that puts 0.1 s blocks into ``feeder``;
    ``seen["at"]`` is the time of the last block (``time.monotonic``)."""
    if stream_factory is None:
        from workbench.ui.kernel_recorder import _load_sounddevice

        stream_factory = _load_sounddevice().InputStream

    def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
        block = np.asarray(indata, dtype=np.float32)
        seen["at"] = time.monotonic()
        feeder.put((block.mean(axis=1) if block.ndim == 2 else block.reshape(-1)).copy())

    seen["at"] = time.monotonic()
    stream = stream_factory(samplerate=SAMPLE_RATE, device=device, channels=1, dtype="float32",
                            blocksize=SAMPLE_RATE // 10, callback=callback)
    stream.start()
    return stream


def _watch_kernel_mic(state: dict[str, Any], stream: Any, lost: Callable[[], None]) -> None:
    """Call ``lost()`` once if ``stream`` (still the open one) stops delivering audio (unplugged, taken)."""
    while state.get("stream") is stream:
        time.sleep(0.25)
        inactive = not getattr(stream, "active", True)
        if state.get("stream") is stream and (inactive or time.monotonic() - state["seen"]["at"] > _MIC_SILENT_S):
            lost()
            return


def live_widget(captions: LiveCaptions, *, source: str = "auto", device: int | str | None = None,
                stream_factory: Callable[..., Any] | None = None) -> Any:
    """The notebook view of ``captions``: Start/Stop, big captions, Say it back, Correct.

    Args:
        source: ``"kernel"`` (this computer's microphone, sounddevice), ``"browser"`` (the
            browser's), or ``"auto"`` (the kernel's when it has one, else the browser's).
        device, stream_factory: the kernel microphone and its stream (tests pass a fake).

    Returns:
        an ``ipywidgets.VBox``; its ``.captions`` is ``captions``.
    """
    from workbench._optional import require
    from workbench.ui._render import error_html
    from workbench.ui._render import wav_bytes as _wav

    w = require("ipywidgets", extra="ui", purpose="show live captions")
    if source == "auto":
        from workbench.ui.kernel_recorder import list_input_devices

        try:
            source = "kernel" if stream_factory is not None or list_input_devices() else "browser"
        except WorkbenchError:
            source = "browser"
    view = w.HTML(f"<style>{CAPTION_CSS}</style>" + captions.html())
    about = w.HTML(f"<div style='color:#495057'>{html.escape(captions.description).replace(chr(10), '<br>')}</div>")
    status = w.HTML()
    say_button = w.Button(description="Say it back", icon="volume-up", button_style="info")
    player = w.Audio(autoplay=True, loop=False, layout=w.Layout(display="none"))
    pick = w.Dropdown(description="Line", options=[], layout=w.Layout(width="28em"))
    fix = w.Text(description="Should say", layout=w.Layout(width="34em"))
    save = w.Button(description="Save correction", button_style="success")
    message = w.HTML()
    state: dict[str, Any] = {"feeder": None, "stream": None}

    def redraw() -> None:
        view.value = f"<style>{CAPTION_CSS}</style>" + captions.html()
        options = [(f"{line.number}. {line.shown}", line.number) for line in reversed(captions.lines[-20:])]
        if [o[1] for o in options] != [o[1] for o in pick.options]:
            current = pick.value
            pick.options = options
            if current in [o[1] for o in options]:
                pick.value = current
        status.value = html.escape(f"Model: {captions.status}")
        if captions.message:
            message.value = (error_html(captions.message) if captions.ok is False
                             else f"<span style='color:#1b5e20'>{html.escape(captions.message)}</span>")

    def start_feeder() -> LiveFeeder:
        state["feeder"] = LiveFeeder(captions, redraw)
        return state["feeder"]

    def on_pick(change: Any) -> None:
        if change["new"] is not None:
            fix.value = captions.line(change["new"]).shown

    def on_say(_: Any) -> None:
        try:
            wave, rate, _text = captions.say_back()
        except WorkbenchError as err:
            message.value = error_html(str(err))
            return
        player.value = _wav(wave, rate)
        player.layout.display = None

    def on_save(_: Any) -> None:
        try:
            if pick.value is None:
                raise WorkbenchError("There is no committed caption to correct yet.")
            captions.correct(pick.value, fix.value)
        except WorkbenchError as err:
            captions._say(str(err), False)
        redraw()

    pick.observe(on_pick, names="value")
    say_button.on_click(on_say)
    save.on_click(on_save)
    actions = w.VBox([w.HBox([say_button, player]), w.HTML("<b>Correct a line</b> (saved as a take from use):"),
                      w.HBox([pick]), w.HBox([fix, save]), message])
    if source == "browser":
        mic = _notebook_browser_mic(start_feeder, captions, redraw)
        controls: Any = mic
    else:
        start = w.Button(description="Start", icon="microphone", button_style="primary")
        stop = w.Button(description="Stop", icon="stop", disabled=True)

        def on_start(_: Any) -> None:
            feeder = start_feeder()
            state["seen"] = {}
            try:
                state["stream"] = _kernel_stream(feeder, device, stream_factory, state["seen"])
            except Exception as err:  # PortAudio raises several types; the person needs the words only
                feeder.end()
                captions._say(f"The microphone could not be opened ({err}). Pick another one, or use the "
                              "browser's microphone: live_widget(captions, source='browser').", False)
                redraw()
                return
            start.disabled, stop.disabled = True, False
            threading.Thread(target=_watch_kernel_mic, args=(state, state["stream"], lambda: on_stop(None, lost=True)),
                             name="workbench-live-mic-watch", daemon=True).start()

        def on_stop(_: Any, *, lost: bool = False) -> None:
            stream, state["stream"] = state["stream"], None
            if stream is not None:
                try:
                    stream.stop()
                    stream.close()
                except Exception:  # already gone (unplugged): the captions are kept either way
                    lost = True
            if lost:
                captions._say(MIC_LOST_MESSAGE, False)
            if state["feeder"] is not None:
                state["feeder"].end()
            start.disabled, stop.disabled = False, True

        start.on_click(on_start)
        stop.on_click(on_stop)
        controls = w.HBox([start, stop])
    box = w.VBox([about, controls, status, view, actions])
    box.captions = captions  # type: ignore[attr-defined]
    return box


def _notebook_browser_mic(start_feeder: Callable[[], LiveFeeder], captions: LiveCaptions,
                          redraw: Callable[[], None]) -> Any:
    """The browser recorder widget, sending 0.5 s chunks that go straight into the captions."""
    from workbench.ui.recorder import BrowserRecorder

    def lost(reason: str) -> None:
        if reason == "ended":
            captions._say(MIC_LOST_MESSAGE, False)
            redraw()

    mic = BrowserRecorder(max_s=1800.0)
    mic.chunk_s = 0.5
    stream = BrowserStream(start_feeder, mic._reply, on_stop=lost,
                           on_error=lambda code, text: (captions._say(text, False), redraw()))
    mic.protocol = stream  # the widget only carries the messages; this stream handles them
    return mic
