"""What every page shares: the server-wide context, the per-session state, safe paths, messages.

Paths: a speaker id from a request becomes a folder only through
:func:`speaker_path`, which validates the id (:func:`~workbench.corpus.validate_speaker_id`)
and checks that the resolved folder sits directly inside the data folder (no
``..``, no symlink out of it). Files offered for download go through
:func:`inside_data_dir`. Uploaded file names are only ever shown or matched as
text, never used to build a path.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import param

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import CorpusError

if TYPE_CHECKING:  # annotations only: the pages load the corpus, models and trainer on first use
    from workbench.corpus import SpeakerCorpus
    from workbench.models import ASRBackend
    from workbench.trainer import TrainConfig

__all__ = [
    "CSS",
    "PAGES",
    "AppContext",
    "ModelDefaults",
    "SessionState",
    "default_models",
    "default_train_config",
    "esc",
    "html_pane",
    "in_session",
    "inside_data_dir",
    "message_html",
    "open_speaker",
    "speaker_path",
]

#: Page names, in the order of the sidebar.
PAGES = ("Speakers", "Record", "Personalize", "Results", "Live captions", "Speakers map")

_COLOURS = {True: "#1b5e20", False: "#b00020", None: "#333"}
_BACKGROUNDS = {True: "#e8f5e9", False: "#fdecea", None: "#f1f3f5"}


#: Styles for the HTML panes (each pane lives in its own shadow DOM, so they travel with it).
CSS = """
:host { font-size: 1.02rem; color: #212529; }
h2 { font-size: 1.6em; margin: 0.2em 0 0.4em; }
h3 { font-size: 1.2em; margin: 0.9em 0 0.3em; }
.wb-prompt-text { font-size: 2.4em; line-height: 1.3; font-weight: 500; padding: 14px 18px; background: #f8f9fa;
  border-left: 6px solid #2a9d8f; border-radius: 6px; }
.wb-where, .wb-progress-text { color: #495057; font-size: 1.05em; }
.wb-table { border-collapse: collapse; width: 100%; max-width: 60em; }
.wb-table th, .wb-table td { border-bottom: 1px solid #dee2e6; padding: 6px 8px; text-align: left; vertical-align: top; }
.wb-table th { background: #f1f3f5; }
.wb-compare { border-collapse: collapse; width: 100%; font-size: 0.95em; }
.wb-compare th, .wb-compare td { border-bottom: 1px solid #eee; padding: 4px 6px; text-align: left; vertical-align: top; }
.wb-big { font-size: 1.7em; margin: 0.3em 0; }
.wb-notice { background: #fff8e1; border-left: 4px solid #f9a825; padding: 6px 10px; font-size: 0.92em; }
.wb-status { font-size: 1.1em; font-weight: 500; }
code { background: #f1f3f5; padding: 0 3px; border-radius: 3px; }
"""


def html_pane(obj: str = "", **params: Any) -> Any:
    """An HTML pane carrying the app's styles."""
    import panel as pn

    return pn.pane.HTML(obj, stylesheets=[CSS], **params)


def in_session(fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` wrapped to run on this browser session's event loop, from any thread.

    Call it in a callback (where the session's document is current); the returned
    function may be called from a background thread. Outside a served page
    (tests) it just calls ``fn``.
    """
    import panel as pn

    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return lambda: fn()

    def call() -> None:
        try:
            doc.add_next_tick_callback(fn)
        except (AttributeError, RuntimeError):
            # the session was closed meanwhile: nothing to show. Bokeh raises AttributeError for a destroyed
            # Document (its callback list is gone), RuntimeError for a collected one or a closed event loop.
            pass

    return call


@dataclasses.dataclass(frozen=True)
class ModelDefaults:
    """Training settings that follow the base model: ``config(backend)`` is its own default
    :class:`~workbench.trainer.TrainConfig` (adapter, learning rate, step limit) with these limits."""

    time_limit_s: float = RUN_DEFAULTS.time_limit_s  # a ceiling: training ends on convergence first
    max_steps: int | None = None  # None: the base model's own (RUN_DEFAULTS.max_steps_for)
    min_utterances: int = RUN_DEFAULTS.min_utterances  # the page says how many more to record

    def __call__(self, backend: ASRBackend) -> TrainConfig:
        from workbench.workflow import default_config

        steps = {} if self.max_steps is None else {"max_steps": self.max_steps}
        return default_config(backend, time_limit_s=self.time_limit_s, min_utterances=self.min_utterances, **steps)


def default_train_config(minutes: float = RUN_DEFAULTS.max_minutes) -> ModelDefaults:
    """The training settings of the app: the base model's defaults with a time ceiling of ``minutes``."""
    return ModelDefaults(time_limit_s=60.0 * float(minutes))


def default_models() -> dict[str, str]:
    """The base models offered: automatic (by speaker), the built-in model, and Whisper
    tiny.en when it is installed."""
    from workbench.models.choice import REAL_SPEECH_MODEL, real_speech_model_available

    models = {"Automatic (by speaker: Whisper for real people)": "auto",
              "Built-in model (synthetic voices only)": "tiny"}
    if real_speech_model_available():
        models["Whisper tiny.en (real speech, offline)"] = REAL_SPEECH_MODEL
    from workbench.models.supernet.model import installed_sizes

    if installed_sizes():  # sizes of the built-in model (recipes/todm/README.md): the machine's pick, or one
        models["Built-in model, the largest size that runs in real time here"] = "tiny-auto"
        models.update({f"Built-in model, {n} size": f"tiny-{n}" for n in installed_sizes()})
    return models


def _default_backend_factory(model: str) -> ASRBackend:
    from workbench.models import load_base_model

    return load_base_model(model)


@dataclasses.dataclass
class AppContext:
    """Server-wide settings, shared (read-only) by every browser session.

    Attributes:
        data_dir: the folder holding the speaker folders; nothing is written outside it.
        models: base models the page offers, label -> name passed to ``backend_factory``;
            ``"auto"`` is resolved per speaker (:func:`workbench.models.choice.choose_base_model`).
            Set by whoever starts the server, never by a request.
        backend_factory: ``fn(name) -> backend``; called once per training run (each
            run gets its own copy, since adapters are injected in place).
        train_config: ``fn(minutes)`` -> a ``TrainConfig``, or a :class:`ModelDefaults` (the default:
            the chosen base model's own settings), for one run.
        decoder: ``"lexicon"`` (the prompt domain's words, the CLI's default) or ``"greedy"``.
        test_fraction: share of prompts kept aside to measure the result.

    The defaults are :data:`workbench.defaults.RUN_DEFAULTS`'s, as the CLI's and the notebooks'.
    """

    data_dir: Path
    models: dict[str, str] = dataclasses.field(default_factory=default_models)
    backend_factory: Callable[[str], ASRBackend] = _default_backend_factory
    train_config: Callable[[float], Any] = default_train_config
    decoder: str = RUN_DEFAULTS.decoder
    test_fraction: float = RUN_DEFAULTS.test_fraction

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if not self.models:
            raise ValueError("AppContext needs at least one base model")

    @property
    def default_model(self) -> str:
        return next(iter(self.models.values()))


class SessionState(param.Parameterized):
    """What one browser session is looking at (one per session, never shared)."""

    speaker_id = param.String(default="", doc="the open speaker ('' = none)")
    page = param.Selector(default=PAGES[0], objects=list(PAGES))
    data_version = param.Integer(default=0, doc="bumped when recordings change, so pages refresh")


def speaker_path(ctx: AppContext, speaker_id: Any) -> Path:
    """The folder of ``speaker_id`` inside the data folder, or :class:`CorpusError`.

    The id must be a safe folder name and the folder (after resolving links)
    must be directly inside ``ctx.data_dir``.
    """
    from workbench.corpus import validate_speaker_id

    sid = validate_speaker_id(speaker_id)
    path = ctx.data_dir / sid
    if path.resolve().parent != ctx.data_dir:
        raise CorpusError(f"Speaker {sid!r} points outside the data folder, so it cannot be opened here.")
    return path


def open_speaker(ctx: AppContext, speaker_id: Any) -> SpeakerCorpus:
    """Open an existing speaker folder (validated by :func:`speaker_path`)."""
    from workbench.corpus import SpeakerCorpus

    path = speaker_path(ctx, speaker_id)
    if not (path / "speaker.json").is_file():
        raise CorpusError(f"There is no speaker {speaker_id!r} in the data folder. Create it on the Speakers page.")
    return SpeakerCorpus.open(path)


def inside_data_dir(ctx: AppContext, path: Path) -> Path:
    """``path`` resolved, if it lies inside the data folder; else :class:`CorpusError`."""
    real = Path(path).resolve()
    if not real.is_relative_to(ctx.data_dir):
        raise CorpusError("That file is outside the data folder, so it is not offered here.")
    return real


def esc(text: Any) -> str:
    """HTML-escape anything shown in the page that came from a person or a file."""
    return html.escape(str(text), quote=True)


def message_html(text: str, ok: bool | None = None) -> str:
    """A plain message box: green for good news, red for a problem, grey otherwise."""
    if not text:
        return ""
    role = "alert" if ok is False else "status"
    return (f"<div role='{role}' class='wb-msg' style='color:{_COLOURS[ok]};background:{_BACKGROUNDS[ok]};"
            f"padding:8px 12px;border-radius:6px;font-size:1.05em;max-width:60em'>{esc(text)}</div>")
