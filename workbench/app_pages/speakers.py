"""Speakers page: the list of speaker folders, create one (de-identified id + consent), open one."""

from __future__ import annotations

import warnings
from typing import Any

import panel as pn

from workbench.app_pages.common import (
    AppContext,
    SessionState,
    esc,
    html_pane,
    message_html,
    open_speaker,
    speaker_path,
)
from workbench.errors import CorpusError, WorkbenchError

__all__ = ["SpeakersPage"]

_PROMPT_SETS = {"Everyday phrases (shipped with the workbench)": "everyday", "My own sentences (type them below)": "own"}
#: What the consent field holds until it is edited: it is stored as shown (a greyed-out hint looked filled in
#: but stored nothing).
CONSENT_TEXT = "Recordings are used to personalize speech recognition for this speaker only."
_N_PROMPTS = 40


class SpeakersPage(pn.viewable.Viewer):
    """List, create and open speakers. Logic methods (:meth:`create`, :meth:`open`) are testable without a browser."""

    def __init__(self, ctx: AppContext, state: SessionState, **params: Any) -> None:
        super().__init__(**params)
        self.ctx, self.state = ctx, state
        self.table = html_pane("", sizing_mode="stretch_width")
        self.choose = pn.widgets.Select(name="Speaker", options=[], width=280)
        self.open_button = pn.widgets.Button(name="Open this speaker", button_type="primary", width=200)
        self.open_message = html_pane("")
        self.new_id = pn.widgets.TextInput(name="Speaker code (de-identified, no names)", placeholder="e.g. spk-017",
                                           width=320)
        self.label = pn.widgets.TextInput(name="Short description (optional, no names)",
                                          placeholder="e.g. adult, group B", width=320)
        self.prompt_set = pn.widgets.Select(name="Sentences to read", options=_PROMPT_SETS, width=420)
        self.n_prompts = pn.widgets.IntInput(name="How many sentences", value=_N_PROMPTS, start=3, end=1000, step=5,
                                             width=200)
        self.own_prompts = pn.widgets.TextAreaInput(name="Your sentences, one per line", height=150, width=520,
                                                    visible=False, placeholder="Good morning\nCan I have a cup of tea")
        self.consent_id = pn.widgets.TextInput(name="Consent record id", placeholder="e.g. consent-2024-05",
                                               width=320)
        self.consent_text = pn.widgets.TextAreaInput(name="What the speaker agreed to", height=70, width=520,
                                                     value=CONSENT_TEXT)
        self.given_by = pn.widgets.TextInput(name="Consent given by", placeholder="speaker or guardian (no names)",
                                             width=320)
        self.create_button = pn.widgets.Button(name="Create speaker", button_type="success", width=200)
        self.create_message = html_pane("")
        self.go_record = pn.widgets.Button(name="Start recording →", button_type="primary", width=200, visible=False)
        self.words = pn.widgets.TextAreaInput(name="Names and words this person uses (one a line)", height=120,
                                              width=420, placeholder="Siobhan\nAuntie Margaret\nparacetamol")
        self.save_words_button = pn.widgets.Button(name="Save the word list", button_type="primary", width=200)
        self.words_message = html_pane("")
        self.words_box = pn.Column(
            html_pane("<h3>Names and words</h3><p>Family names, places, pets, medicines: recognition favours them "
                      "where the recording allows, from the next phrase on (no new training). Keep the list "
                      "short: the words this person says most. Until a personal model is trained, the standard "
                      "model favours them more cautiously: it is less sure of this person's speech, and may still "
                      "write a listed name now and then where none was said.</p>"),
            self.words, self.save_words_button, self.words_message, visible=False)
        self.save_words_button.on_click(lambda _: self.save_words())
        self.prompt_set.param.watch(lambda e: setattr(self.own_prompts, "visible", e.new == "own"), "value")
        self.prompt_set.param.watch(lambda e: setattr(self.n_prompts, "visible", e.new != "own"), "value")
        self.create_button.on_click(lambda _: self.create())
        self.open_button.on_click(lambda _: self.open(self.choose.value))
        self.go_record.on_click(lambda _: setattr(self.state, "page", "Record"))
        self.refresh()

    # ------------------------------------------------------------------ logic
    def speakers(self) -> list[dict[str, Any]]:
        """Summaries of the speaker folders in the data folder."""
        from workbench.corpus import list_speakers

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                corpora = list_speakers(self.ctx.data_dir)
            except CorpusError:
                return []
        from workbench.workflow import personal_submodel

        out = []
        for c in corpora:
            s = c.summary()
            s["trained"] = any((c.root / "submodels").glob("*.safetensors"))
            s["personal"] = personal_submodel(c.root)  # the user's pick, else the newest run that beat the base
            out.append(s)
        return out

    def refresh(self) -> None:
        rows = self.speakers()
        self.choose.options = [r["speaker_id"] for r in rows]
        self.choose.visible = self.open_button.visible = bool(rows)
        if self.state.speaker_id in self.choose.options:
            self.choose.value = self.state.speaker_id
        elif rows and self.choose.value not in self.choose.options:
            self.choose.value = rows[0]["speaker_id"]  # Panel leaves it blank; show a real choice
        if not rows:
            self.table.object = ("<p class='wb-empty'>No speakers yet in "
                                 f"<code>{esc(self.ctx.data_dir)}</code>. Create the first one below.</p>")
            return
        body = "".join(
            f"<tr><td><b>{esc(r['speaker_id'])}</b>{' (simulated)' if r['simulated'] else ''}</td>"
            f"<td>{esc(r['display_name'])}</td>"
            f"<td>{r['n_prompts_recorded']} of {r['n_prompts']}</td><td>{r['n_ok']}</td>"
            f"<td>{r['minutes_ok']:.1f}</td><td>{self._personal_cell(r)}</td></tr>" for r in rows)
        self.table.object = (
            "<table class='wb-table'><thead><tr><th>Speaker</th><th>Description</th><th>Sentences recorded</th>"
            "<th>Good recordings</th><th>Minutes</th><th>Personal model</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")

    @staticmethod
    def _personal_cell(row: dict[str, Any]) -> str:
        """"yes" with which run and why, or why there is none (runs that did not beat the base model are not used)."""
        personal = row.get("personal")
        if personal is not None:
            return (f"yes<div style='color:#666;font-size:0.85em'>{esc(personal.path.name)}: "
                    f"{esc(personal.reason)}</div>")
        if row["trained"]:
            return ("no<div style='color:#666;font-size:0.85em'>no run beat the base model yet "
                    "(see Results)</div>")
        return "not yet"

    def on_show(self) -> None:
        self.refresh()

    def _prompts(self) -> list[str]:
        from workbench.prompts import load_prompts, parse_prompts

        if self.prompt_set.value == "own":
            prompts = parse_prompts(self.own_prompts.value or "")
            if not prompts:
                raise CorpusError("Type at least one sentence (one per line), or choose the everyday phrases.")
            return prompts
        prompts = load_prompts("everyday")  # a shipped name, never a path from the page
        n = int(self.n_prompts.value or 0)
        if n < 1:
            raise CorpusError("Choose how many sentences to read (at least 1).")
        return prompts[:n]

    def create(self) -> str | None:
        """Create the speaker from the form; returns its id, or None (the message says why)."""
        from workbench.corpus import SpeakerCorpus

        sid = (self.new_id.value or "").strip()
        consent = (self.consent_id.value or "").strip()
        try:
            if not sid:
                raise CorpusError("Type a speaker code first, e.g. spk-017 (a code, not the person's name).")
            path = speaker_path(self.ctx, sid)
            if (path / "speaker.json").is_file():
                raise CorpusError(f"A speaker {sid!r} already exists. Open it above, or choose another code.")
            if not consent:
                raise CorpusError("Type the id of the signed consent record before creating the speaker "
                                  "(e.g. consent-2024-05). It is stored with every recording.")
            from workbench.corpus import (
                validate_speaker_id,  # the consent id follows the same naming rules
            )

            try:
                validate_speaker_id(consent)
            except CorpusError:
                raise CorpusError(f"Consent record id {consent!r} is not allowed: use letters, digits, '-' or '_' "
                                  "(e.g. consent-2024-05).") from None
            prompts = self._prompts()
            corpus = SpeakerCorpus.create(self.ctx.data_dir, sid, display_name=(self.label.value or "").strip(),
                                          prompts=prompts)
            corpus.add_consent(consent, text=self.consent_text.value or "", given_by=(self.given_by.value or "").strip())
        except WorkbenchError as err:
            self.create_message.object = message_html(str(err), False)
            self.go_record.visible = False
            return None
        self.create_message.object = message_html(
            f"Speaker {sid} is ready, with {len(prompts)} sentences to read and consent {consent}. "
            "Next: record the sentences.", True)
        self.open_message.object = ""  # it was about the speaker open before
        self.go_record.visible = True
        self.reset_form()
        self.state.speaker_id = sid
        self._show_words(corpus.root)
        self.refresh()
        return sid

    def reset_form(self) -> None:
        """Empty the new-speaker form (so the next speaker does not inherit this one's consent)."""
        self.new_id.value = self.label.value = self.consent_id.value = self.given_by.value = ""
        self.own_prompts.value = ""
        self.consent_text.value = CONSENT_TEXT
        self.prompt_set.value = next(iter(_PROMPT_SETS.values()))
        self.n_prompts.value = _N_PROMPTS

    def open(self, speaker_id: Any) -> bool:
        """Make ``speaker_id`` the open speaker of this session (validated); False with a message if not."""
        try:
            corpus = open_speaker(self.ctx, speaker_id)
        except WorkbenchError as err:
            self.open_message.object = message_html(str(err), False)
            return False
        self.state.speaker_id = corpus.speaker_id
        self._show_words(corpus.root)
        self.create_message.object = ""  # "speaker X is ready" no longer describes the open speaker
        self.go_record.visible = False
        s = corpus.summary()
        self.open_message.object = message_html(
            f"Opened {corpus.speaker_id}: {s['n_ok']} good recordings, {s['n_prompts_recorded']} of "
            f"{s['n_prompts']} sentences recorded. Use the pages on the left to record, personalize or see results.",
            True)
        return True

    def _show_words(self, folder: Any) -> None:
        """Fill the word-list box with the open speaker's saved list (or say why it cannot be read)."""
        from workbench.vocabulary import speaker_vocabulary, vocabulary_text

        self.words_box.visible = True
        self.words_message.object = ""
        try:
            self.words.value = vocabulary_text(speaker_vocabulary(folder))
        except WorkbenchError as err:  # a hand-edited file: say so, and let a valid list replace it
            self.words.value = ""
            self.words_message.object = message_html(f"{err} Saving a list here replaces that file.", False)

    def save_words(self) -> bool:
        """Check and save the open speaker's word list from the text area; False (with a message) if not."""
        from workbench.vocabulary import save_vocabulary, vocabulary_text

        if not self.state.speaker_id:
            self.words_message.object = message_html("Open a speaker first.", False)
            return False
        try:
            saved = save_vocabulary(speaker_path(self.ctx, self.state.speaker_id), self.words.value or "")
        except WorkbenchError as err:
            self.words_message.object = message_html(f"Not saved: {err}", False)
            return False
        self.words.value = vocabulary_text(saved)
        self.words_message.object = message_html(
            f"Saved {len(saved)} word{'s' if len(saved) != 1 else ''} for {self.state.speaker_id}; "
            "recognition uses them from the next phrase on." if saved else
            f"The word list of {self.state.speaker_id} is now empty.", True)
        return True

    # ------------------------------------------------------------------ view
    def __panel__(self) -> Any:
        return pn.Column(
            html_pane("<h2>Speakers</h2><p>Each speaker has a folder in the data folder with their "
                      "recordings, consent and personal models. Use a code, never a real name.</p>"),
            self.table,
            pn.Row(self.choose, pn.Column(pn.Spacer(height=18), self.open_button)),
            self.open_message,
            self.words_box,
            html_pane("<h3>New speaker</h3>"),
            self.new_id, self.label, pn.Row(self.prompt_set, self.n_prompts), self.own_prompts,
            html_pane("<p style='margin-bottom:0'><b>Consent.</b> Ask the speaker (or their guardian) before "
                      "recording and keep the signed form; type its id here.</p>"),
            self.consent_id, self.consent_text, self.given_by,
            pn.Row(self.create_button, self.go_record), self.create_message,
            sizing_mode="stretch_width", css_classes=["wb-page", "wb-speakers"],
        )
