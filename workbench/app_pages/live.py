"""Live captions page: the open speaker talks, their personal model captions, large and readable.

The browser's microphone is the recorder of the Record page (``ui/static/recorder.js``, hosted
by :class:`~workbench.app_pages.recorder.PanelRecorder`), sending 0.5 s pieces instead of
one-second pieces of a take; each piece goes straight to the recognizer
(:class:`workbench.ui.live.BrowserStream` -> :class:`~workbench.ui.live.LiveFeeder`, one decoding
thread per session). The captions, *say it back* and *correct* are
:class:`workbench.ui.live.LiveCaptions`, the same as in the notebook; the recognizer and its
description (which model and why) are :func:`workbench.live.open_recognizer`'s.

Plain messages for what can go wrong: the microphone goes away mid-stream (the captions stay),
no personal model yet (the base model captions, and the page says so), a personal model that
cannot be used with the base model, a correction with no words, a correction while a training
run uses the folder (nothing is written; the line stays, to be saved again).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import param

from workbench.app_pages import recorder as _recorder
from workbench.app_pages.common import (
    CSS,
    AppContext,
    SessionState,
    esc,
    html_pane,
    in_session,
    message_html,
    speaker_path,
)
from workbench.errors import WorkbenchError
from workbench.ui.live import CAPTION_CSS, MIC_LOST_MESSAGE, BrowserStream, LiveCaptions, LiveFeeder

__all__ = ["LiveMicrophone", "LivePage"]

# recorder.js with the words of live captions (its status lines are about takes); the take's Play is hidden
_LIVE_SHIM = r"""
const __wbLiveWords = new Map([
  ["Press Record, read the sentence, then press Stop.", "Press \u25cf Start captions and speak: the words appear below."],
  ["Recording\u2026 press Stop when the sentence is finished.", "Listening\u2026 the captions appear below. Press \u25a0 Stop to end."],
]);
function __wbLiveRender({ model, el }) {
  const done = __wbRender({ model, el });
  const relabel = () => {
    const rec = el.querySelector(".wb-rec-record");
    if (rec) { rec.textContent = "\u25cf Start captions"; rec.title = "Caption this browser's microphone"; }
    const play = el.querySelector(".wb-rec-play");
    if (play) play.style.display = "none";
    const status = el.querySelector(".wb-rec-status");
    if (status && !status.dataset.live) {
      status.dataset.live = "1";
      const fix = () => {
        const t = status.textContent;
        if (__wbLiveWords.has(t)) status.textContent = __wbLiveWords.get(t);
        else if (t.endsWith("Checking the recording\u2026"))
          status.textContent = t.replace("Checking the recording\u2026", "Finishing the captions\u2026");
      };
      fix();
      new MutationObserver(fix).observe(status, { childList: true, characterData: true, subtree: true });
    }
  };
  relabel();
  Promise.resolve(done).then(relabel);
  return done;
}
export default { render: __wbLiveRender };
"""
_ESM_END = "export default { render: __wbRender };"
_LIVE_ESM = (_recorder._ESM.replace(_ESM_END, _LIVE_SHIM) if _recorder._ESM and _ESM_END in _recorder._ESM
             else None)


class LiveMicrophone(_recorder.PanelRecorder):
    """The browser recorder streaming 0.5 s pieces to a :class:`~workbench.ui.live.BrowserStream`."""

    max_s = param.Number(default=1800.0, bounds=(1, 7200), doc="the page stops by itself after this long")
    chunk_s = param.Number(default=0.5, doc="audio per message: a caption step")

    _esm = _LIVE_ESM or "export function render({el}) { el.textContent = 'The recorder is not installed.' }"

    def __init__(self, stream: BrowserStream, **params: Any) -> None:
        super().__init__(**params)
        stream.reply = self._reply
        self.protocol = stream  # type: ignore[assignment]  # same messages, each piece goes on at once


def _submodel_files(folder: Path) -> tuple:
    """What the personal models on disk are now (names, sizes, times): a new one means reopening."""
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (folder / "submodels").iterdir()))
    except OSError:
        return ()


class LivePage(pn.viewable.Viewer):
    """Live captions of the open speaker. ``captions`` is the :class:`LiveCaptions` (None until loaded).

    ``open_recognizer`` is :func:`workbench.live.open_recognizer` (tests give a small model).
    """

    open_recognizer: Any = None  # None: workbench.live.open_recognizer

    def __init__(self, ctx: AppContext, state: SessionState, **params: Any) -> None:
        super().__init__(**params)
        self.ctx, self.state = ctx, state
        self.model = "auto"  # the personal model's own base model, else by the speaker's kind
        self.captions: LiveCaptions | None = None
        self.feeder: LiveFeeder | None = None
        self.loading = False
        self._loaded_for: tuple | None = None
        self._filled = ""  # the text the page put in the correction box (not typed by the person)
        self._listing = False  # True while refresh() renews the line list (not the person picking a line)
        self._lock = threading.Lock()
        self.header = html_pane("")
        self.about = html_pane("", sizing_mode="stretch_width")
        self.view = pn.pane.HTML("", stylesheets=[CSS, CAPTION_CSS], sizing_mode="stretch_width")
        self.status = html_pane("")
        self.message = html_pane("", sizing_mode="stretch_width")
        self.stream = BrowserStream(self._start_feeder, on_error=self._mic_error, on_stop=self._stopped)
        self.recorder = LiveMicrophone(self.stream, disabled=True) if _LIVE_ESM else None
        self.say_button = pn.widgets.Button(name="Say it back", button_type="primary", width=190,
                                            description="Speak the last line in a clear voice")
        self.player = pn.pane.Audio(None, autoplay=True, visible=False, name="Said back", width=320)
        self.voice_note = html_pane("")
        self.pick = pn.widgets.Select(name="Line", options={}, width=420)
        self.fix = pn.widgets.TextInput(name="It should say", width=420, placeholder="type what was said")
        self.save = pn.widgets.Button(name="Save correction", button_type="success", width=170)
        self.say_button.on_click(lambda _: self.say_back())
        self.save.on_click(lambda _: self.correct())
        self.pick.param.watch(self._on_pick, "value")
        # the text as last typed: value_input follows each key press in the browser, value only a blur or Enter
        # (a click on Save may reach the server before that blur's value)
        self._typed = ""
        self.fix.param.watch(lambda e: setattr(self, "_typed", e.new or ""), ["value", "value_input"])
        self._refresh_later = in_session(self.refresh)
        self._done_later = in_session(self._opened)
        state.param.watch(self._on_speaker, "speaker_id")
        self.refresh()

    # ------------------------------------------------------------------ the model
    def _opener(self) -> Any:
        if self.open_recognizer is not None:
            return self.open_recognizer
        from workbench.live import open_recognizer

        return open_recognizer

    def _busy(self) -> str | None:
        from workbench.app_pages.jobs import job_for

        job = job_for(speaker_path(self.ctx, self.state.speaker_id)) if self.state.speaker_id else None
        return "a training run is using this speaker's folder" if job is not None and job.running else None

    def _on_speaker(self, _event: Any) -> None:
        """Another speaker: let go of the old model; load the new one only if this page is on screen."""
        if self.state.page == "Live captions":
            self.load()
            return
        self._end_stream()
        old, self.captions, self._loaded_for = self.captions, None, None
        if old is not None and hasattr(old.recognizer, "close"):
            old.recognizer.close()
        if self.recorder is not None:
            self.recorder.disabled = True
        self.refresh()

    def load(self, *, wait: bool = False) -> None:
        """(Re)open the open speaker's model in the background (``wait``: in this thread).

        Called when the page is shown (a model is loaded only for a page someone looks at).
        """
        self._end_stream()
        old, self.captions, self._loaded_for = self.captions, None, None
        if old is not None and hasattr(old.recognizer, "close"):
            old.recognizer.close()
        self.message.object = ""
        self.player.visible = False
        if self.recorder is not None:
            self.recorder.disabled = True
        sid = self.state.speaker_id
        if not sid:
            self.refresh()
            return
        try:
            folder = speaker_path(self.ctx, sid)
        except WorkbenchError as err:
            self.message.object = message_html(str(err), False)
            self.refresh()
            return
        self.loading = True
        key = (sid, _submodel_files(folder))
        self.refresh()
        if wait:
            self._open(folder, key)
        else:
            threading.Thread(target=self._open, args=(folder, key), name="workbench-live-open", daemon=True).start()

    def _open(self, folder: Path, key: tuple) -> None:
        opener = self._opener()
        problem = None
        try:
            rec, description = opener(folder, self.model)
        except WorkbenchError as err:  # e.g. the personal model's base model is not installed
            problem = str(err)
            try:
                rec, description = opener(None, self.model)
                description = (f"The personal model cannot be used: {problem} The base model captions alone.\n"
                               + description.splitlines()[0])
            except WorkbenchError as err2:
                rec, description = None, f"No model could be loaded: {err2}"
        with self._lock:
            if self.state.speaker_id != key[0]:  # the person opened another speaker meanwhile
                if rec is not None and hasattr(rec, "close"):
                    rec.close()
                return
            self.captions = None if rec is None else LiveCaptions(rec, description, speaker_dir=folder,
                                                                   busy=self._busy)
            self._loaded_for, self.loading = key, False
        self._done_later()

    def _opened(self) -> None:
        if self.recorder is not None:
            self.recorder.disabled = self.captions is None
        self.refresh()

    def on_show(self) -> None:
        """Shown: load the speaker's model, or reopen it when a new personal model appeared (unless streaming)."""
        sid = self.state.speaker_id
        if not sid or self.loading or self.feeder is not None:
            return
        try:
            key = (sid, _submodel_files(speaker_path(self.ctx, sid)))
        except WorkbenchError:
            return
        if key != self._loaded_for:
            self.load()

    # ------------------------------------------------------------------ streaming
    def _start_feeder(self) -> LiveFeeder | None:
        if self.captions is None:
            return None
        self._end_stream()
        self.captions._say("", None)
        self.feeder = LiveFeeder(self.captions, self._refresh_later)
        return self.feeder

    def _end_stream(self) -> None:
        feeder, self.feeder = self.feeder, None
        if feeder is not None:
            feeder.end()

    def _stopped(self, reason: str) -> None:
        self.feeder = None
        if reason == "ended" and self.captions is not None:
            self.captions._say(MIC_LOST_MESSAGE, False)
        self._refresh_later()

    def _mic_error(self, code: str, text: str) -> None:
        self.message.object = message_html(text or "The browser could not use the microphone.", False)

    # ------------------------------------------------------------------ actions
    def say_back(self, *, wait: bool = False) -> None:
        """Speak the last committed line (in a thread; ``wait``: here). The audio plays in the page."""
        captions = self.captions
        if captions is None:
            self.message.object = message_html("Open a speaker and let the model load first.", False)
            return
        self.say_button.disabled = True
        show = in_session(lambda: self._show_said(result))
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                wave, rate, text = captions.say_back()
                result.update(wave=wave, rate=rate, text=text)
            except WorkbenchError as err:
                result["error"] = str(err)
            show()

        if wait:
            work()
        else:
            threading.Thread(target=work, name="workbench-say-back", daemon=True).start()

    def _show_said(self, result: dict[str, Any]) -> None:
        self.say_button.disabled = False
        if "error" in result:
            self.message.object = message_html(result["error"], False)
            return
        pcm = np.clip(np.round(result["wave"] * 32767), -32768, 32767).astype(np.int16)
        self.player.sample_rate = int(result["rate"])
        self.player.object = pcm
        self.player.visible = True
        self.player.paused = False
        self.message.object = message_html(f"Saying: \u201c{result['text']}\u201d", None)

    def _fill(self, text: str) -> None:
        self.fix.value = self._filled = text

    def _on_pick(self, event: Any) -> None:
        if self._listing:  # the page is renewing the list: refresh() decides what the box shows
            return
        if event.new is not None and self.captions is not None:
            try:
                self._fill(self.captions.line(event.new).shown)
            except WorkbenchError:
                pass

    def correct(self) -> Any:
        """Save the line picked with the text typed as a take from use (see :meth:`LiveCaptions.correct`)."""
        captions = self.captions
        try:
            if captions is None:
                raise WorkbenchError("Open a speaker and let the model load first.")
            if self.pick.value is None:
                raise WorkbenchError("There is no caption to correct yet: press Start captions and speak.")
            utt = captions.correct(self.pick.value, self._typed)
        except WorkbenchError as err:
            self.message.object = message_html(str(err), False)
            return None
        self.state.data_version += 1  # the Results and Record pages count the new take
        self.refresh()
        self.fix.value = ""  # the browser shows what was saved (a same-value update would not reach it)
        self._fill(captions.line(self.pick.value).shown if self.pick.value is not None else "")
        return utt

    # ------------------------------------------------------------------ view
    def refresh(self) -> None:
        sid = self.state.speaker_id
        if not sid:
            self.header.object = ("<h2>Live captions</h2><p>First choose or create a speaker on the "
                                  "<b>Speakers</b> page.</p>")
            self.about.object = self.view.object = self.status.object = ""
            return
        self.header.object = f"<h2>Live captions: {esc(sid)}</h2>"
        captions = self.captions
        if captions is None:
            self.about.object = ("<div class='wb-notice'>Loading the speaker's model\u2026</div>" if self.loading
                                 else "")
            self.view.object = ""
            return
        lines = [esc(line) for line in captions.description.splitlines() if line.strip()]
        personal = not any("No personal model" in line or "base model captions alone" in line for line in lines)
        style = "background:#e8f5e9;border-left:4px solid #2a9d8f" if personal else \
            "background:#fff8e1;border-left:4px solid #f9a825"
        self.about.object = (f"<div style='{style};padding:8px 12px;font-size:0.98em;max-width:60em'>"
                             + "<br>".join(lines) + "</div>")
        self.view.object = captions.html()
        feeder = self.feeder
        self.status.object = ("" if feeder is None else
                              f"<span class='wb-where'>\u25cf Listening \u00b7 {feeder.heard_s:.0f} s heard \u00b7 "
                              f"the model is {esc(captions.status)}</span>")
        recent = list(reversed(captions.lines[-10:]))
        options = {f"{line.number}. {line.shown[:60]}": line.number for line in recent}
        if options != self.pick.options:
            untouched = self._typed in ("", self._filled)  # nobody is typing a correction (key presses included): follow the newest
            keep = self.pick.value if self.pick.value in options.values() and not untouched else \
                (recent[0].number if recent else None)
            self._listing = True
            try:
                self.pick.options = options
                self.pick.value = keep
            finally:
                self._listing = False
            if keep is not None and untouched:
                self._fill(captions.line(keep).shown)
        if captions.message:
            self.message.object = message_html(captions.message, captions.ok)

    def _voice_text(self) -> str:
        from workbench.live.voice import describe_voice

        return describe_voice()

    def __panel__(self) -> Any:
        self.voice_note.object = f"<span style='color:#495057;font-size:0.92em'>{esc(self._voice_text())}</span>"
        mic = (self.recorder if self.recorder is not None else
               html_pane("<p>The browser recorder is not available in this installation.</p>"))
        return pn.Column(
            self.header, self.about, mic, self.status, self.view,
            pn.Row(self.say_button, self.player), self.voice_note,
            html_pane("<h3>Correct a line</h3><p>Pick a line, type what was said, and save: the words and their "
                      "sound become a recording of this speaker, marked as coming from use. The next "
                      "personalization learns from it.</p>"),
            pn.Row(self.pick), pn.Row(self.fix, self.save), self.message,
            sizing_mode="stretch_width", css_classes=["wb-page", "wb-live"])
