"""Record page: prompt by prompt with the browser's microphone, or uploads.

The logic is :class:`workbench.ui.session.PromptSession`, the same as in the
recording notebook: every take is saved at once (FLAC + manifest line), a take
with quality errors is kept aside, Record again / Skip / Back / Next move
through the list. This page only shows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import panel as pn

from workbench.app_pages.common import (
    AppContext,
    SessionState,
    esc,
    html_pane,
    message_html,
    open_speaker,
)
from workbench.app_pages.recorder import PanelRecorder, recorder_available
from workbench.app_pages.speakers import CONSENT_TEXT
from workbench.app_pages.upload_input import FileUpload
from workbench.app_pages.uploads import add_uploaded_files
from workbench.constants import SAMPLE_RATE
from workbench.corpus import load_one_upload
from workbench.errors import WorkbenchError
from workbench.recording_hint import page_hint

if TYPE_CHECKING:
    from workbench.audio import Recording
    from workbench.corpus import ImportReport, SpeakerCorpus, Utterance
    from workbench.ui.session import PromptSession

__all__ = ["RecordPage"]

_STATUS_WORDS = {"recorded": "recorded", "skipped": "skipped", "rejected": "needs a new take", "todo": "to record"}


class RecordPage(pn.viewable.Viewer):
    """Record the open speaker's prompts. ``session`` is the :class:`PromptSession` (None: nothing open)."""

    def __init__(self, ctx: AppContext, state: SessionState, **params: Any) -> None:
        super().__init__(**params)
        self.ctx, self.state = ctx, state
        self.session: PromptSession | None = None
        self.corpus: SpeakerCorpus | None = None
        self.header = html_pane("")
        self.where = html_pane("")
        self.prompt = html_pane("", css_classes=["wb-prompt"], sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(value=0, max=1, width=420, bar_color="success")
        self.progress_text = html_pane("")
        self.message = html_pane("")
        self.recorder = PanelRecorder(max_s=30.0) if recorder_available() else None
        if self.recorder is not None:
            # the corpus that saved the take decides (no check of its own); the page's message says what
            # it found, once: the recorder itself only says that the take arrived
            self.recorder.on_recording(lambda rec: self.take(rec, source="browser").quality_report)
            self.recorder.protocol.show_quality = False
        self.back = pn.widgets.Button(name="← Back", width=110)
        self.again = pn.widgets.Button(name="Record again", width=140)
        self.skip = pn.widgets.Button(name="Skip", width=110)
        self.next = pn.widgets.Button(name="Next →", button_type="primary", width=110)
        self.player = pn.pane.Audio(None, sample_rate=SAMPLE_RATE, visible=False, name="Last take")
        self.upload_one = FileUpload(accept=".wav,.flac,.ogg", multiple=False,
                                     label="Recording of the sentence on screen")
        self.upload_many = FileUpload(accept=".wav,.flac,.ogg,.txt,.csv", multiple=True,
                                      label="Recordings and their transcript file")
        self.upload_message = html_pane("")
        self.consent_id = pn.widgets.TextInput(name="Consent record id", placeholder="e.g. consent-2024-05", width=320)
        self.consent_text = pn.widgets.TextAreaInput(name="What the speaker agreed to", height=70, width=520,
                                                     value=CONSENT_TEXT)
        self.given_by = pn.widgets.TextInput(name="Consent given by", placeholder="speaker or guardian (no names)",
                                             width=320)
        self.consent_button = pn.widgets.Button(name="Save consent", button_type="primary", width=160)
        self.consent_box = pn.Column(
            html_pane("<p><b>Consent first.</b> Ask the speaker (or guardian) before recording, then type the "
                      "id of the signed consent record. It is stored with every recording.</p>"),
            self.consent_id, self.consent_text, self.given_by, self.consent_button, visible=False)
        self.work = pn.Column(visible=False, sizing_mode="stretch_width")
        self.back.on_click(lambda _: self._act("back"))
        self.again.on_click(lambda _: self._act("redo"))
        self.skip.on_click(lambda _: self._act("skip"))
        self.next.on_click(lambda _: self._act("next"))
        self.consent_button.on_click(lambda _: self.give_consent())
        self.upload_one.on_files(self._on_upload_one)
        self.upload_one.on_refused(lambda text: setattr(self.message, "object", message_html(text, False)))
        self.upload_many.on_files(self.add_files)
        self.upload_many.on_refused(lambda text: setattr(self.upload_message, "object", message_html(text, False)))
        state.param.watch(lambda _: self.load(), "speaker_id")
        self._build_work()
        self.load()

    # ------------------------------------------------------------------ logic
    def load(self) -> None:
        """(Re)open the session's speaker and go to the first prompt still to record."""
        from workbench.ui.session import PromptSession

        self.session = self.corpus = None
        self.message.object = self.upload_message.object = ""
        self._forget_take()
        if self.state.speaker_id:
            try:
                self.corpus = open_speaker(self.ctx, self.state.speaker_id)
                consents = [c.get("consent_id") for c in self.corpus.info.get("consent", [])]
                if self.corpus.prompts():
                    self.session = PromptSession(self.corpus, consent_id=consents[-1] if consents else None)
            except WorkbenchError as err:
                self.message.object = message_html(str(err), False)
        self.refresh()

    @property
    def consent(self) -> str | None:
        if self.session is not None:
            return self.session.consent_id
        consents = [c.get("consent_id") for c in self.corpus.info.get("consent", [])] if self.corpus else []
        return consents[-1] if consents else None

    def give_consent(self) -> bool:
        """Record the consent typed in the form for this speaker."""
        cid = (self.consent_id.value or "").strip()
        try:
            if self.corpus is None:
                raise WorkbenchError("Open a speaker first.")
            if not cid:
                raise WorkbenchError("Type the id of the signed consent record, e.g. consent-2024-05.")
            if self.session is not None:
                self.session.give_consent(cid, text=self.consent_text.value or "",
                                          given_by=(self.given_by.value or "").strip())
            else:
                self.corpus.add_consent(cid, text=self.consent_text.value or "",
                                        given_by=(self.given_by.value or "").strip())
        except WorkbenchError as err:
            self.message.object = message_html(str(err), False)
            return False
        self.message.object = message_html(f"Consent {cid} is recorded. You can start recording.", True)
        self.refresh()
        return True

    def take(self, recording: Recording, *, source: str) -> Utterance:
        """Save a take of the prompt on screen (from the microphone or an upload)."""
        if self.session is None:
            raise WorkbenchError("Open a speaker with a prompt list before recording.")
        try:
            utt = self.session.record(recording, source=source)
        except WorkbenchError as err:
            self.message.object = message_html(str(err), False)
            raise
        # the browser recorder has its own Play button for its take: one play control per take
        self.player.object = recording.audio if source != "browser" else None
        self.player.visible = source != "browser"
        self.state.data_version += 1
        self.refresh()
        return utt

    def _act(self, what: str) -> None:
        if self.session is None:
            return
        try:
            getattr(self.session, what)()
        except WorkbenchError as err:
            self.session._say(str(err), False)
        self._forget_take()
        self.state.data_version += 1
        self.refresh()

    def _forget_take(self) -> None:
        """Another sentence (or Record again): the last take's Play buttons and message go."""
        self.player.visible = False
        self.player.object = None
        if self.recorder is not None:
            self.recorder.reset()

    def _on_upload_one(self, files: list[tuple[str, bytes]]) -> None:
        try:
            if len(files) != 1:
                raise WorkbenchError("Upload one recording at a time for the sentence on screen.")
            rec = load_one_upload(*files[0])
            self.take(rec, source="upload")
        except WorkbenchError as err:
            self.message.object = message_html(str(err), False)

    def add_files(self, files: list[tuple[str, bytes]]) -> ImportReport | None:
        """Add many uploaded recordings with their transcript file (see :func:`add_uploaded_files`)."""
        from workbench.ui.session import PromptSession

        if self.corpus is None:
            self.upload_message.object = message_html("Open or create a speaker first (Speakers page).", False)
            return None
        if self.consent is None:
            self.upload_message.object = message_html("Record the speaker's consent first (above).", False)
            return None
        try:
            report = add_uploaded_files(self.corpus, files, consent_id=self.consent)
        except WorkbenchError as err:
            self.upload_message.object = message_html(str(err), False)
            return None
        self.upload_message.object = message_html(report.message, report.ok)
        index = self.session.index if self.session is not None else None
        self.session = PromptSession(self.corpus, consent_id=self.consent)  # the prompt list may have grown
        if index is not None and self.session.status(index) not in ("recorded", "skipped"):
            self.session.go(index)
        self.state.data_version += 1
        self.refresh()
        return report

    # ------------------------------------------------------------------ view
    def refresh(self) -> None:
        corpus, session = self.corpus, self.session
        if corpus is None:
            self.header.object = ("<h2>Record</h2><p>First choose or create a speaker on the "
                                  "<b>Speakers</b> page.</p>")
            self.work.visible = self.consent_box.visible = False
            return
        self.header.object = f"<h2>Record: {esc(corpus.speaker_id)}</h2>"
        has_consent = self.consent is not None
        self.consent_box.visible = not has_consent
        self.work.visible = has_consent
        if self.recorder is not None:
            self.recorder.disabled = session is None
        if session is None:
            self.where.object = ""
            self.prompt.object = ("<p>This speaker has no sentences to read yet. Add recordings with their "
                                  "transcript file below; their sentences become the list.</p>")
            self.progress.value, self.progress_text.object = 0, ""
            return
        self.where.object = (f"<div class='wb-where'>Sentence {session.index + 1} of {session.n_prompts} · "
                             f"{esc(_STATUS_WORDS.get(session.status(), session.status()))}</div>")
        self.prompt.object = f"<div class='wb-prompt-text'>{esc(session.prompt)}</div>"
        done, total = session.progress
        self.progress.max, self.progress.value = max(total, 1), done
        hint = page_hint(corpus.info, len(corpus.utterances("ok")))  # "" until a measured table is shipped
        self.progress_text.object = (f"<span class='wb-progress-text'>{esc(session.progress_text)}</span>"
                                     + (f"<p class='wb-hint'>{esc(hint)}</p>" if hint else ""))
        if session.message:
            self.message.object = message_html(session.message, session.ok)

    def _build_work(self) -> None:
        mic: Any
        if self.recorder is not None:
            mic = pn.Column(html_pane("<p>Press <b>● Record</b>, let the speaker read the sentence, then press "
                                      "<b>■ Stop</b>. The recording is checked and saved at once.</p>"),
                            self.recorder, sizing_mode="stretch_width")
        else:
            mic = html_pane("<p>The browser recorder is not available in this installation; "
                            "upload recordings below.</p>")
        self.work.objects = [
            self.where, self.prompt, pn.Row(self.progress, self.progress_text), mic, self.message,
            pn.Row(self.back, self.again, self.skip, self.next), self.player,
            html_pane("<h3>Upload instead</h3><p>A recording of the sentence on screen (WAV, FLAC or OGG):</p>"),
            self.upload_one,
            html_pane("<p>Or many recordings at once, <b>together with their transcript file</b>: a .txt "
                      "file with one line per recording, <code>file-name-without-extension the sentence</code>, "
                      "or a .csv file with the columns <code>id,text</code>, or the speaker's prompt list (one "
                      "sentence per line, in the order of the recordings' file names).</p>"),
            self.upload_many, self.upload_message,
        ]

    def __panel__(self) -> Any:
        return pn.Column(self.header, self.consent_box, self.work, sizing_mode="stretch_width",
                         css_classes=["wb-page", "wb-record"])
