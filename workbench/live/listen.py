"""``workbench listen``: live captions in the terminal, from the microphone or a file.

The command only renders :class:`~workbench.live.CaptionEvent` s:

* plain: committed words are printed as they commit, one phrase a line (a new line after a pause);
* ``--json``: one JSON object a line per event,
  ``{"event": "commit"|"partial", "text": ..., "start": s, "end": s, "emitted": s}``.

What went wrong goes to stderr in plain words, and what was captioned is kept: a microphone
that disappears mid-stream ends the stream after the captions so far are committed.

A file is played in real time (chunks fed at the pace of the audio) unless ``--fast``;
either way ``emitted`` is on the audio's clock (see :class:`~workbench.live.StreamingRecognizer`).
"""

from __future__ import annotations

import json
import queue
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from workbench.constants import SAMPLE_RATE
from workbench.errors import MicrophoneError
from workbench.live.events import CaptionEvent

__all__ = ["file_chunks", "listen", "microphone_chunks"]

CHUNK_S = 0.1  # seconds of audio per chunk (what a microphone callback typically delivers)
_MIC_SILENT_S = 2.0  # no audio from the microphone for this long: it is gone
_MAX_FILE_S = 3600.0  # files up to an hour


def file_chunks(path: str | Path, *, realtime: bool = True, chunk_s: float = CHUNK_S,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[np.ndarray]:
    """Chunks ``(n,)`` float32 of an audio file, at the pace of the audio (``realtime``) or at once."""
    from workbench.audio import load_audio

    wav = load_audio(path, max_s=_MAX_FILE_S)
    step = max(1, int(round(chunk_s * SAMPLE_RATE)))
    t0 = time.monotonic()
    for s in range(0, len(wav), step):
        if realtime:
            wait = t0 + s / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                sleep(wait)
        yield wav[s: s + step]


def microphone_chunks(device: int | str | None = None, *, chunk_s: float = CHUNK_S,
                      sounddevice: Any = None) -> Iterator[np.ndarray]:
    """Chunks ``(n,)`` float32 at 16 kHz from a microphone (sounddevice/PortAudio), until the caller stops.

    Raises:
        MicrophoneError: sounddevice or PortAudio is missing, the microphone cannot be opened, or it stops
            sending sound (unplugged) - the caller keeps what was captioned.
    """
    sd = sounddevice
    if sd is None:
        try:
            import sounddevice as sd
        except ImportError:
            raise MicrophoneError("Live captions from the microphone need the package 'sounddevice'. Install it "
                                  "with: pip install 'workbench[live]' (or caption a file with --file)",
                                  reason="no_sounddevice") from None
        except OSError:  # sounddevice raises OSError("PortAudio library not found")
            raise MicrophoneError("The sound library PortAudio is missing. Install it with: sudo apt-get install "
                                  "libportaudio2 (or caption a file with --file)", reason="no_portaudio") from None
    chunks: queue.Queue = queue.Queue()

    def callback(indata, frames, time_info, status) -> None:  # the audio thread: copy, nothing slow
        chunks.put(np.array(indata[:, 0], dtype=np.float32))

    try:
        stream = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", device=device,
                                blocksize=int(round(chunk_s * SAMPLE_RATE)), callback=callback)
        stream.start()
    except Exception as err:  # PortAudioError, ValueError for a bad device: say it plainly
        raise MicrophoneError(f"The microphone could not be opened ({err}). Check that one is plugged in and "
                              "allowed, or caption a file with --file.", reason="no_input") from None
    try:
        while True:
            try:
                yield chunks.get(timeout=_MIC_SILENT_S)
            except queue.Empty:
                raise MicrophoneError(f"The microphone stopped sending sound (unplugged or switched off?) after "
                                      f"{_MIC_SILENT_S:.0f} s of nothing. The captions so far are kept.",
                                      reason="device") from None
    finally:
        try:
            stream.stop()
            stream.close()
        except Exception:  # the device is already gone
            pass


class _Printer:
    """Plain captions: committed words on one line per phrase (a new line when a pause separates them)."""

    def __init__(self, out: TextIO, as_json: bool, pause_s: float) -> None:
        self.out, self.as_json, self.pause_s = out, as_json, pause_s
        self.last_end: float | None = None
        self.lines = 0

    def show(self, ev: CaptionEvent) -> None:
        if self.as_json:
            self.out.write(json.dumps(ev.to_json()) + "\n")
        elif ev.kind == "commit":
            if self.last_end is not None and ev.start_s - self.last_end >= self.pause_s:
                self.out.write("\n")
            elif self.last_end is not None:
                self.out.write(" ")
            if self.last_end is None or ev.start_s - self.last_end >= self.pause_s:
                self.lines += 1
            self.out.write(ev.text)
            self.last_end = ev.end_s
        self.out.flush()

    def close(self) -> None:
        if not self.as_json and self.last_end is not None:
            self.out.write("\n")
            self.out.flush()


def listen(speaker: str | Path | None = None, model: str = "auto", *, file: str | Path | None = None,
           fast: bool = False, as_json: bool = False, device: int | str | None = None,
           out: TextIO | None = None, err: TextIO | None = None, chunks: Iterator[np.ndarray] | None = None,
           **options: Any) -> int:
    """Caption a speaker live; returns the exit code (0; 1 when the microphone failed mid-stream).

    Args:
        speaker: a speaker folder (their personal model), or None for the base model.
        model: ``"auto"`` or a base model name.
        file: caption this audio file instead of the microphone.
        fast: with ``file``, feed it as fast as possible instead of in real time.
        as_json: one JSON object per event on ``out``.
        device: the microphone (index or name; default: the system's).
        chunks: audio chunks to caption instead of a file or the microphone (tests, other sources).
        options: :class:`~workbench.live.StreamingRecognizer` settings.
    """
    from workbench.live.opening import open_recognizer

    out = out or sys.stdout
    err = err or sys.stderr
    if fast and file is None and chunks is None:
        raise MicrophoneError("--fast only applies to --file: the microphone always runs in real time",
                              reason="device")
    rec, why = open_recognizer(speaker, model, **options)
    print(why, file=err)
    if chunks is None:
        chunks = file_chunks(file, realtime=not fast) if file is not None else microphone_chunks(device)
        if file is None:
            print("Listening; press Ctrl+C to stop.", file=err)
    printer = _Printer(out, as_json, rec.pause_s)
    code, problem = 0, None
    try:
        for chunk in chunks:
            for ev in rec.feed(chunk):
                printer.show(ev)
    except MicrophoneError as e:  # mid-stream: keep what was said
        problem, code = str(e), 1
    except KeyboardInterrupt:
        problem = "Stopped."
    finally:
        for ev in rec.finish():
            printer.show(ev)
        printer.close()
        rec.close()
    if problem:
        print(problem, file=err)
    print(f"Captioned {rec.now_s:.1f} s of audio; decoding took {rec.rtf:.2f} s per second of audio "
          f"({rec.status}).", file=err)
    return code
