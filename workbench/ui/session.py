"""A prompt session: read each prompt aloud, one take each, saved at once.

:class:`PromptSession` is the logic, with no widgets and no microphone: a test
(or a notebook) feeds takes with :meth:`PromptSession.record`. Every take goes
straight into the :class:`~workbench.corpus.SpeakerCorpus` (FLAC written
atomically, manifest line fsynced), so nothing is lost if the kernel dies; a new
session on the same folder resumes at the first prompt still to record.
:meth:`PromptSession.widget` is the view: the prompt in large text, progress
"n of N", a :class:`~workbench.ui.recorder.Recorder` (kernel, browser or upload
microphone), Back / Record again / Skip / Next, and a player for earlier takes.

Rules, in the corpus's terms (takes are never deleted):

- a take with quality errors is saved with status ``"rejected"``;
- a new good take of a prompt replaces the earlier good one, which is kept on
  disk with status ``"rejected"`` (its id is in the new take's ``extra["replaces"]``);
- :meth:`~PromptSession.redo` sets the prompt's good take aside (``"rejected"``)
  at once, so an unwanted take is never used even if no new take follows;
- :meth:`~PromptSession.skip` marks the prompt's takes ``"skipped"``; a prompt
  skipped before any take is remembered for this session only.

>>> import tempfile, numpy as np
>>> from workbench.corpus import SpeakerCorpus
>>> corpus = SpeakerCorpus.create(tempfile.mkdtemp(), "spk01", prompts=["Good morning.", "Thank you."])
>>> session = PromptSession(corpus, consent_id="consent-01")
>>> session.prompt, session.progress_text
('Good morning.', '0 of 2 recorded')
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.audio import QualityReport, Recording
from workbench.constants import SAMPLE_RATE
from workbench.corpus import SpeakerCorpus, Utterance
from workbench.errors import CorpusError, WorkbenchError
from workbench.text import prompt_key
from workbench.ui._render import error_html

if TYPE_CHECKING:
    from workbench.ui.recorder import Recorder

__all__ = ["PromptSession"]


class PromptSession:
    """Record a prompt list into a speaker folder, one prompt at a time.

    Args:
        corpus: the speaker folder the takes go into.
        prompts: the prompts to read (default: the corpus's list). If the corpus
            has no prompt list yet, this one is stored as its list.
        consent_id: a consent already given (recorded with ``add_consent``, or
            recorded now if new). Without it, :meth:`give_consent` must come
            before the first take.

    Attributes:
        index: the current prompt, 0-based.
        message: what the view shows after the last action, in plain language.
        ok: whether :attr:`message` is good news (True), a problem (False) or neutral (None).
        last_take: the :class:`~workbench.corpus.Utterance` saved last, or None.
    """

    def __init__(self, corpus: SpeakerCorpus, *, prompts: Sequence[str] | None = None,
                 consent_id: str | None = None) -> None:
        self.corpus = corpus
        if prompts is None:
            self.prompts = corpus.prompts()
        else:
            self.prompts = [p.strip() for p in prompts if isinstance(p, str) and p.strip()]
            if len(self.prompts) != len(list(prompts)):
                raise CorpusError("Every prompt must be a line of text; remove empty or non-text entries.")
            if not corpus.prompts():
                corpus.set_prompts(self.prompts)
            first = {}  # one line per sentence (prompt_key), in order, first spelling kept: as corpus.prompts()
            self.prompts = [first.setdefault(prompt_key(p), p) for p in self.prompts if prompt_key(p) not in first]
        if not self.prompts:
            raise CorpusError(
                f"Speaker {corpus.speaker_id!r} has no prompts to read. Give a list: "
                "PromptSession(corpus, prompts=['Good morning.', ...]) or corpus.set_prompts([...])."
            )
        self.consent_id: str | None = None
        self.message = ""
        self.ok: bool | None = None
        self.last_take: Utterance | None = None
        self._skipped: set[int] = set()
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        if consent_id is not None:
            self.give_consent(consent_id)
        self.index = self._first_open()
        self._view: Any = None

    # -- consent -------------------------------------------------------------- #

    def give_consent(self, consent_id: str, *, text: str = "", given_by: str = "") -> str:
        """Use ``consent_id`` for every take of this session; records it in the corpus if new.

        Args:
            consent_id: a short id such as ``"consent-2024-05"`` (letters, digits, ``-_.``).
            text: what was agreed to (stored with a new consent).
            given_by: who gave it, de-identified (the speaker or a guardian).
        """
        with self._lock:
            known = [c.get("consent_id") for c in self.corpus.info.get("consent", [])]
            if consent_id not in known:
                self.corpus.add_consent(consent_id, text=text, given_by=given_by)
            self.consent_id = consent_id
            self._say(f"Consent {consent_id!r} is recorded; it is stored with every take.", None)
            return consent_id

    # -- where we are ----------------------------------------------------------- #

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def prompt(self) -> str:
        """The prompt to read now."""
        return self.prompts[self.index]

    def takes(self, index: int | None = None) -> list[Utterance]:
        """Takes of prompt ``index`` (default: every prompt of this session), any status, oldest first."""
        if index is not None:
            self._check_index(index)
            wanted = {prompt_key(self.prompts[index])}
        else:
            wanted = {prompt_key(p) for p in self.prompts}
        return [u for u in self.corpus.utterances(None) if prompt_key(u.prompt) in wanted]

    def status(self, index: int | None = None) -> str:
        """``"recorded"`` (a good take), ``"skipped"``, ``"rejected"`` (only unusable takes) or ``"todo"``."""
        i = self.index if index is None else self._check_index(index)
        takes = self.takes(i)
        if any(u.status == "ok" for u in takes):
            return "recorded"
        if i in self._skipped or any(u.status == "skipped" for u in takes):
            return "skipped"
        return "rejected" if takes else "todo"

    def statuses(self) -> list[str]:
        """:meth:`status` of every prompt (one manifest read)."""
        by_prompt: dict[str, list[str]] = {}
        for u in self.corpus.utterances(None):
            by_prompt.setdefault(prompt_key(u.prompt), []).append(u.status)
        out = []
        for i, p in enumerate(self.prompts):
            st = by_prompt.get(prompt_key(p), [])
            if "ok" in st:
                out.append("recorded")
            elif i in self._skipped or "skipped" in st:
                out.append("skipped")
            else:
                out.append("rejected" if st else "todo")
        return out

    @property
    def progress(self) -> tuple[int, int]:
        """``(prompts with a good take, number of prompts)``."""
        return self.statuses().count("recorded"), self.n_prompts

    @property
    def progress_text(self) -> str:
        """E.g. ``"3 of 10 recorded"`` or ``"3 of 10 recorded, 1 skipped"``."""
        st = self.statuses()
        text = f"{st.count('recorded')} of {self.n_prompts} recorded"
        return text + (f", {st.count('skipped')} skipped" if "skipped" in st else "")

    def summary(self) -> dict[str, Any]:
        """Counts of this session's prompts (what :attr:`progress_text` says) and of the folder's takes.

        Returns:
            ``{"n_prompts", "n_recorded", "n_skipped", "n_rejected", "n_todo"}`` count
            prompts (a prompt skipped before any take counts as skipped, although the
            folder holds no take for it); ``"n_takes_ok"``, ``"n_takes_rejected"``,
            ``"n_takes_skipped"`` and ``"minutes_ok"`` count the takes on disk.
        """
        st = self.statuses()
        folder = self.corpus.summary()
        return {"speaker_id": self.corpus.speaker_id, "n_prompts": self.n_prompts,
                "n_recorded": st.count("recorded"), "n_skipped": st.count("skipped"),
                "n_rejected": st.count("rejected"), "n_todo": st.count("todo"),
                "n_takes_ok": folder["n_ok"], "n_takes_rejected": folder["n_rejected"],
                "n_takes_skipped": folder["n_skipped"], "minutes_ok": folder["minutes_ok"]}

    @property
    def finished(self) -> bool:
        """True when every prompt is recorded or skipped."""
        return all(s in ("recorded", "skipped") for s in self.statuses())

    def _first_open(self) -> int:
        st = self.statuses()
        return next((i for i, s in enumerate(st) if s in ("todo", "rejected")), 0)

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.n_prompts:
            raise CorpusError(f"There is no prompt {index!r}: prompts are numbered 0 to {self.n_prompts - 1}.")
        return int(index)

    def _say(self, message: str, ok: bool | None) -> None:
        """Set the message of the last action and tell the views (every action ends here)."""
        self.message, self.ok = message, ok
        for fn in list(self._listeners):
            fn()

    def on_change(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` after every action (record, skip, next, go...), whoever made it. Returns ``fn``.

        The widget redraws itself this way, so it always shows the session's current
        prompt, also when a notebook cell drives the session.
        """
        self._listeners.append(fn)
        return fn

    # -- actions ------------------------------------------------------------------ #

    def record(self, audio: np.ndarray | Recording, sample_rate: int = SAMPLE_RATE, *, source: str = "program") -> Utterance:
        """Save a take of the current prompt into the corpus, at once.

        Args:
            audio: ``(n,)`` float32 samples at ``sample_rate``, or a :class:`~workbench.audio.Recording`.
            sample_rate: rate of ``audio`` in Hz (ignored for a Recording).
            source: where it came from (``"kernel"``, ``"browser"``, ``"upload"``...), stored in ``extra``.

        Returns:
            The saved :class:`~workbench.corpus.Utterance`: status ``"ok"``, or
            ``"rejected"`` when the quality check found an error (the take is kept).
            The corpus decides (:meth:`~workbench.corpus.SpeakerCorpus.add_take`); :attr:`message`
            says what its ``quality_report`` found, in plain language. It does not move on: call :meth:`next`.

        Raises:
            CorpusError: no consent given yet.
            AudioError: nothing to save (empty or damaged audio).
        """
        if isinstance(audio, Recording):
            audio, sample_rate = audio.audio, audio.sample_rate
        with self._lock:
            if self.consent_id is None:
                raise CorpusError(
                    "Ask for consent before recording, then enter its id: "
                    "session.give_consent('consent-2024-05', text='...', given_by='speaker')."
                )
            i = self.index
            earlier = [u for u in self.takes(i) if u.status == "ok"]
            extra: dict[str, Any] = {"prompt_index": i, "source": source}
            utt = self.corpus.add_take(  # a good take replaces the earlier good one; a rejected one, nothing
                audio, prompt=self.prompts[i], sample_rate=sample_rate, consent_id=self.consent_id, extra=extra,
                replaces=[u.utt_id for u in earlier],
            )
            self._skipped.discard(i)
            self.last_take = utt
            problems = utt.quality_report.message
            if utt.status == "ok":
                note = " It replaces the earlier take (kept on disk, not used)." if earlier else ""
                self._say(f"Saved ({utt.duration_s:.1f} s). {problems}{note}", True)
            else:
                kept = " The earlier good take is still used." if earlier else ""
                self._say(f"Saved but not usable: {problems} Press Record to try again.{kept}", False)
            return utt

    def redo(self) -> Utterance | None:
        """Set the current prompt's good take aside (status ``"rejected"``, kept on disk) to record it again.

        Returns:
            The take set aside, or None if the prompt had no good take.
        """
        with self._lock:
            good = [u for u in self.takes(self.index) if u.status == "ok"]
            for u in good:
                self.corpus.set_status(u.utt_id, "rejected")
            self._say("Press Record and read the sentence again." + (
                " The earlier take is set aside (kept on disk, not used)." if good else ""), None)
            return good[-1] if good else None

    def skip(self) -> int:
        """Skip the current prompt and move to the next. Returns the new :attr:`index`.

        Its unusable takes are marked ``"skipped"``; a good take stays in use.
        """
        with self._lock:
            i = self.index
            takes = self.takes(i)
            if not any(u.status == "ok" for u in takes):
                for u in takes:
                    self.corpus.set_status(u.utt_id, "skipped")
                self._skipped.add(i)
            self.next()
            self._say(f"Skipped prompt {i + 1}. " + self.message, self.ok)
            return self.index

    def next(self) -> int:
        """Go to the next prompt; after the last one, back to the first still to record. Returns :attr:`index`."""
        with self._lock:
            if self.index + 1 < self.n_prompts:
                self.index += 1
                self._say(f"Prompt {self.index + 1} of {self.n_prompts}.", None)
                return self.index
            st = self.statuses()
            open_ = [i for i, s in enumerate(st) if s in ("todo", "rejected")]
            if open_:
                self.index = open_[0]
                self._say(f"Prompt {self.index + 1} still needs a take.", None)
            else:
                self._say(f"All {self.n_prompts} prompts are done: {self.progress_text}. Thank you!", True)
            return self.index

    def back(self) -> int:
        """Go to the previous prompt. Returns :attr:`index`."""
        with self._lock:
            self.index = max(0, self.index - 1)
            self._say(f"Prompt {self.index + 1} of {self.n_prompts}.", None)
            return self.index

    def go(self, index: int) -> int:
        """Go to prompt ``index`` (0-based). Returns :attr:`index`."""
        with self._lock:
            self.index = self._check_index(index)
            self._say(f"Prompt {self.index + 1} of {self.n_prompts}.", None)
            return self.index

    def audio(self, take: Utterance | str) -> np.ndarray:
        """A saved take's audio, ``(n,)`` float32 at 16 kHz, to listen again."""
        return self.corpus.load_audio(take)

    # -- view ------------------------------------------------------------------------ #

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self._view is None:
            self._view = self.widget()
        return self._view._repr_mimebundle_(**kwargs)

    def widget(self, recorder: Recorder | None = None) -> Any:
        """The view: consent (asked once), the prompt in large text, progress, a recorder, actions, earlier takes.

        Args:
            recorder: a :class:`~workbench.ui.recorder.Recorder` (default: a new
                one that saves each kernel take as soon as it stops).
        """
        from workbench._optional import require
        from workbench.ui._render import wav_bytes
        from workbench.ui.recorder import Recorder

        w = require("ipywidgets", extra="ui", purpose="show the recording session")
        rec = recorder if recorder is not None else Recorder(auto_keep=True)
        rec.show_quality = False  # the session's message says what the check found, once

        consent_id = w.Text(description="Consent id", placeholder="consent-2024-05")
        consent_text = w.Textarea(description="Agreed to", placeholder="What the speaker agreed to")
        given_by = w.Text(description="Given by", placeholder="speaker or guardian (no names)")
        consent_save = w.Button(description="Save consent", button_style="primary")
        consent_msg = w.HTML()
        consent_box = w.VBox([
            w.HTML("<b>Consent.</b> Ask the speaker (or guardian) before recording. "
                   "Enter the id of the signed consent; it is stored with every take."),
            consent_id, consent_text, given_by, consent_save, consent_msg])

        where = w.HTML()
        prompt = w.HTML()
        progress = w.IntProgress(min=0, max=self.n_prompts, description="Progress")
        progress_label = w.Label()
        message = w.HTML()
        back = w.Button(description="Back", icon="arrow-left")
        again = w.Button(description="Record again", icon="refresh")
        skip = w.Button(description="Skip", icon="forward")
        next_ = w.Button(description="Next", icon="arrow-right", button_style="primary")
        earlier = w.Dropdown(description="Earlier takes", style={"description_width": "initial"},
                             layout=w.Layout(width="36em"))
        play = w.Button(description="Play", icon="play")
        player = w.Audio(format="wav", autoplay=True, layout=w.Layout(display="none"))
        work = w.VBox([
            where, prompt, w.HBox([progress, progress_label]), rec.widget(), message,
            w.HBox([back, again, skip, next_]), w.HBox([earlier, play]), player])

        def clear_player() -> None:  # patient audio leaves the widget state as soon as it is not needed
            player.value, player.layout.display = b"", "none"

        def refresh() -> None:  # trait updates only (may run on the kernel recorder's thread)
            has_consent = self.consent_id is not None
            consent_box.layout.display = "none" if has_consent else ""
            work.layout.display = "" if has_consent else "none"
            where.value = f"<div style='color:#555'>Prompt {self.index + 1} of {self.n_prompts} " \
                          f"&middot; {html.escape(self.status())}</div>"
            prompt.value = ("<div style='font-size:2.4em;line-height:1.3;padding:12px 0;font-weight:500'>"
                            f"{html.escape(self.prompt)}</div>")
            progress.value, progress_label.value = self.progress[0], self.progress_text
            color = {True: "#2e7d32", False: "#b00020", None: "inherit"}[self.ok]
            message.value = f"<div style='color:{color}'>{html.escape(self.message)}</div>"
            options = [(f"{i + 1}. {_short(u.prompt)} - {u.status}, {u.duration_s:.1f} s", u.utt_id)
                       for u in reversed(self.takes()) for i in [_index_of(self.prompts, u.prompt)]]
            keep = earlier.value
            earlier.options = options
            ids = [v for _, v in options]
            earlier.value = keep if keep in ids else (ids[0] if ids else None)  # newest first
            play.disabled = not options

        def act(fn: Callable[[], object]) -> Callable[[object], None]:
            def handler(_: object) -> None:
                clear_player()
                try:
                    fn()  # the session calls refresh (on_change)
                except WorkbenchError as err:
                    self._say(str(err), False)
            return handler

        def on_take(recording: Recording) -> QualityReport | None:  # kernel recorder's thread or comm handler
            clear_player()
            try:
                utt = self.record(recording, source=rec.last_source or "program")
            except WorkbenchError as err:
                self._say(str(err), False)
                return None
            return utt.quality_report  # the recorder shows the corpus's decision, not a check of its own

        def on_consent(_: Any) -> None:
            try:
                self.give_consent(consent_id.value.strip(), text=consent_text.value, given_by=given_by.value.strip())
            except WorkbenchError as err:
                consent_msg.value = error_html(str(err))

        def on_play(_: Any) -> None:
            if earlier.value is None:
                return
            try:
                player.value = wav_bytes(self.audio(earlier.value))
                player.layout.display = ""
            except WorkbenchError as err:
                self._say(str(err), False)

        rec.on_recording(on_take)
        consent_save.on_click(on_consent)
        back.on_click(act(self.back))
        again.on_click(act(self.redo))
        skip.on_click(act(self.skip))
        next_.on_click(act(self.next))
        play.on_click(on_play)
        earlier.observe(lambda _: clear_player(), names="value")
        self.on_change(refresh)
        refresh()
        return w.VBox([consent_box, work])


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _index_of(prompts: list[str], text: str) -> int:
    try:
        return prompts.index(text)
    except ValueError:
        return -1
