"""The frame of the app: the sidebar with the pages, the open speaker, and the template."""

from __future__ import annotations

from typing import Any

import panel as pn

from workbench.app_pages.common import PAGES, AppContext, SessionState, esc, html_pane
from workbench.app_pages.live import LivePage
from workbench.app_pages.personalize import PersonalizePage
from workbench.app_pages.record import RecordPage
from workbench.app_pages.results import ResultsPage
from workbench.app_pages.speaker_map import SpeakerMapPage
from workbench.app_pages.speakers import SpeakersPage

__all__ = ["WorkbenchApp"]

_HELP = {
    "Speakers": "Create a speaker (a code, never a name) with their consent, or open one.",
    "Record": "Read the sentences one by one. Every recording is saved at once.",
    "Personalize": "Train the personal model. You can stop at any time.",
    "Results": "Word errors before and after, each recording, the report to download.",
    "Live captions": "The speaker talks; their personal model captions. Say it back, correct a line.",
    "Speakers map": "Which speakers sound alike.",
}

_TEMPLATE_CSS = """
#sidebar .bk-btn-group .bk-btn { text-align: left; font-size: 1.05rem; padding: 10px 14px; }
"""


class WorkbenchApp(pn.viewable.Viewer):
    """One browser session of the app: its own :class:`SessionState` and page objects."""

    def __init__(self, ctx: AppContext, **params: Any) -> None:
        super().__init__(**params)
        self.ctx = ctx
        self.state = SessionState()
        self.pages: dict[str, Any] = {
            "Speakers": SpeakersPage(ctx, self.state),
            "Record": RecordPage(ctx, self.state),
            "Personalize": PersonalizePage(ctx, self.state),
            "Results": ResultsPage(ctx, self.state),
            "Live captions": LivePage(ctx, self.state),
            "Speakers map": SpeakerMapPage(ctx, self.state),
        }
        self.nav = pn.widgets.RadioButtonGroup(options=list(PAGES), value=self.state.page, orientation="vertical",
                                               button_type="primary", button_style="outline",
                                               sizing_mode="stretch_width", name="Pages")
        self.speaker_badge = html_pane("", sizing_mode="stretch_width")
        self.help = html_pane("", sizing_mode="stretch_width")
        self.main = pn.Column(sizing_mode="stretch_width")
        self.nav.param.watch(lambda e: setattr(self.state, "page", e.new), "value")
        self.state.param.watch(self._on_page, "page")
        self.state.param.watch(lambda _: self._badge(), "speaker_id")
        self._show(self.state.page)
        self._badge()

    def go(self, page: str) -> None:
        """Switch to ``page`` (one of :data:`~workbench.app_pages.common.PAGES`)."""
        self.state.page = page

    def _on_page(self, event: Any) -> None:
        self.nav.value = event.new
        self._show(event.new)

    def _show(self, page: str) -> None:
        view = self.pages[page]
        if hasattr(view, "on_show"):
            view.on_show()
        self.main.objects = [view]
        self.help.object = f"<p style='color:#495057;font-size:0.95em'>{esc(_HELP[page])}</p>"

    def _badge(self) -> None:
        sid = self.state.speaker_id
        self.speaker_badge.object = (
            f"<div style='padding:8px 10px;background:#e9f5f2;border-radius:6px'>Open speaker:<br>"
            f"<b style='font-size:1.2em'>{esc(sid)}</b></div>" if sid else
            "<div style='padding:8px 10px;background:#f1f3f5;border-radius:6px'>No speaker open yet.</div>")

    def open_from_url(self) -> None:
        """Open ``?speaker=<id>`` from the page address (validated like any other request)."""
        args = getattr(pn.state, "session_args", None) or {}
        values = args.get("speaker") or []
        if values:
            raw = values[0]
            sid = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            self.pages["Speakers"].open(sid)

    def close(self) -> None:
        """Release what the session holds (hidden recorder widgets, the progress timer).

        Called when Panel destroys the session (the page was closed, or never connected);
        afterwards nothing outside the session refers to it, so it is freed.
        """
        for page in self.pages.values():
            rec = getattr(page, "recorder", None)
            if rec is not None:
                rec.close()
        self.pages["Personalize"]._stop_polling()

    def sidebar(self) -> list[Any]:
        return [self.speaker_badge, self.nav, self.help]

    def template(self) -> Any:
        """The page: a Bootstrap template (it loads nothing from outside, unlike the Fast/Material ones)."""
        return pn.template.BootstrapTemplate(
            title="Speech Workbench", sidebar=self.sidebar(), main=[self.main], header_background="#2a6f97",
            sidebar_width=270, raw_css=[_TEMPLATE_CSS])

    def __panel__(self) -> Any:
        return pn.Row(pn.Column(*self.sidebar(), width=260), self.main, sizing_mode="stretch_width")
