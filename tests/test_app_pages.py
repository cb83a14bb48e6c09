"""What users found on the app's pages (issue 16, item 12), driven through the pages' Python side.

The charts' console warning and the single play control in a real browser are checked
in ``tests/browser/test_app_browser.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pn = pytest.importorskip("panel")

from _models import tiny_backend  # noqa: E402

from conftest import make_speechlike  # noqa: E402
from workbench.adapters import ResidualConfig  # noqa: E402
from workbench.app_pages import jobs  # noqa: E402
from workbench.app_pages.common import AppContext, esc  # noqa: E402
from workbench.app_pages.personalize import sentences_needed  # noqa: E402
from workbench.app_pages.shell import WorkbenchApp  # noqa: E402
from workbench.app_pages.speakers import CONSENT_TEXT  # noqa: E402
from workbench.audio import Recording  # noqa: E402
from workbench.corpus import SpeakerCorpus  # noqa: E402
from workbench.trainer import TrainConfig  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore:the held-out set has only")]

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "sim-accent"


def tiny_config(minutes: float) -> TrainConfig:
    return TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=100_000, time_limit_s=60.0 * minutes,
                       eval_every=2, batch_size=4, min_utterances=10, specaugment=None, patience=0)


@pytest.fixture
def app(tmp_path) -> WorkbenchApp:
    (tmp_path / "data").mkdir()
    return WorkbenchApp(AppContext(data_dir=tmp_path / "data", backend_factory=lambda name: tiny_backend(),
                                   train_config=tiny_config, decoder="greedy"))


def create(app: WorkbenchApp, sid: str, consent: str, n: int = 40, **form) -> str | None:
    page = app.pages["Speakers"]
    page.new_id.value, page.consent_id.value, page.n_prompts.value = sid, consent, n
    for name, value in form.items():
        getattr(page, name).value = value
    return page.create()


def sample_files(n: int, skip: int = 0) -> list[tuple[str, bytes]]:
    lines = [json.loads(x) for x in (SAMPLE / "manifest.jsonl").read_text().splitlines() if x.strip()]
    lines = lines[skip:skip + n]
    files = [(Path(u["audio_path"]).name, (SAMPLE / u["audio_path"]).read_bytes()) for u in lines]
    return files + [("t.txt", "".join(f"{Path(u['audio_path']).stem} {u['transcript']}\n" for u in lines).encode())]


# --------------------------------------------------------------------------- Speakers page


def test_the_consent_text_shown_is_the_text_stored(app, tmp_path) -> None:
    page = app.pages["Speakers"]
    assert page.consent_text.value == CONSENT_TEXT and not page.consent_text.placeholder
    assert create(app, "spk-001", "consent-1") == "spk-001"
    stored = SpeakerCorpus.open(tmp_path / "data" / "spk-001").info["consent"][0]
    assert stored["text"] == CONSENT_TEXT
    record = app.pages["Record"]  # the Record page's consent form says the same
    assert record.consent_text.value == CONSENT_TEXT


def test_the_new_speaker_form_is_empty_for_the_next_speaker(app, tmp_path) -> None:
    assert create(app, "spk-001", "consent-1", n=7, label="adult, group B", given_by="guardian",
                  consent_text="Only for this study.") == "spk-001"
    page = app.pages["Speakers"]
    assert (page.new_id.value, page.label.value, page.consent_id.value, page.given_by.value) == ("", "", "", "")
    assert page.consent_text.value == CONSENT_TEXT and page.n_prompts.value == 40
    # a second speaker created without retyping gets a plain refusal, not the first one's consent
    page.new_id.value = "spk-002"
    assert page.create() is None and "consent record" in page.create_message.object


def test_messages_about_another_speaker_do_not_stay_on_screen(app) -> None:
    page = app.pages["Speakers"]
    assert create(app, "spk-001", "consent-1") == "spk-001"
    assert create(app, "spk-002", "consent-2") == "spk-002"
    assert page.open("spk-001") and "Opened spk-001" in page.open_message.object
    assert page.create_message.object == "" and not page.go_record.visible  # "spk-002 is ready" is gone
    assert create(app, "spk-003", "consent-3") == "spk-003"
    assert page.open_message.object == ""  # "Opened spk-001" is gone


# --------------------------------------------------------------------------- Record page


def test_one_play_control_per_take(app) -> None:
    assert create(app, "spk-001", "consent-1", n=5) == "spk-001"
    page = app.pages["Record"]
    page.take(Recording(make_speechlike(1.5), 16_000), source="browser")
    assert not page.player.visible  # the recorder's own Play button plays it
    page._act("next")
    page.upload_one.receive([("take.flac", (SAMPLE / "audio" / "00001-4cccfd.flac").read_bytes())])
    assert page.player.visible and page.player.object is not None  # an upload has no other player


def test_next_clears_the_last_take_and_its_quality_is_said_once(app) -> None:
    """Issue 24 A11: after Next the recorder kept the previous take's message and Play button, and
    the quality message was shown twice (by the recorder and by the page)."""
    import numpy as np

    assert create(app, "spk-001", "consent-1", n=5) == "spk-001"
    page = app.pages["Record"]
    if page.recorder is None:
        pytest.skip("the browser recorder is not installed")
    sent: list[dict] = []
    page.recorder._send_msg = sent.append
    quiet = (0.001 * make_speechlike(1.5) * 32767).astype(np.int16)  # too quiet: the check says why
    protocol = page.recorder.protocol
    protocol.handle_message({"type": "start", "take": "t1", "rate": 16_000})
    protocol.handle_message({"type": "chunk", "take": "t1", "seq": 0, "n": quiet.size}, [quiet.tobytes()])
    protocol.handle_message({"type": "stop", "take": "t1", "chunks": 1, "samples": quiet.size})
    report = SpeakerCorpus.open(page.corpus.root).utterances(None)[-1].quality_report
    assert not report.ok and sent[-1]["type"] == "result"
    assert report.message not in sent[-1]["message"] and "Received 1.5 s" in sent[-1]["message"]  # the recorder
    assert page.message.object.count(report.problems[0].message) == 1  # the page says it, once
    page._act("next")
    assert sent[-1] == {"type": "reset"}  # the recorder drops the take's message and Play button
    assert report.problems[0].message not in page.message.object and "Prompt 2 of 5" in page.message.object
    assert not page.player.visible and page.player.object is None


# --------------------------------------------------------------------------- Personalize page


def test_record_more_adds_up_whatever_has_been_recorded() -> None:
    need = {n: sentences_needed(n, 10, test_fraction=0.25) for n in range(0, 20)}
    assert all(n + more == need[0] + 0 for n, more in need.items() if more > 0)
    assert need[0] == 16 and need[5] == 11 and need[16] == 0


def test_the_page_asks_for_a_number_that_adds_up(app) -> None:
    assert create(app, "spk-001", "consent-1", n=3) == "spk-001"
    page = app.pages["Personalize"]
    page.load()
    assert "Record about 16 more sentences" in page.data.object
    app.pages["Record"].add_files(sample_files(5))
    page.load()
    assert "Record about 11 more sentences" in page.data.object


def test_a_small_validation_set_is_said_on_the_page(app) -> None:
    assert create(app, "spk-001", "consent-1", n=3) == "spk-001"
    app.pages["Record"].add_files(sample_files(16))
    page = app.pages["Personalize"]
    page.load()
    assert not page.train.disabled
    assert "words are kept aside to decide when to stop" in page.data.object and "wb-notice" in page.data.object


def test_the_word_error_chart_has_ranges_even_when_every_value_is_equal(app) -> None:
    page = app.pages["Personalize"]
    assert page.wer_fig.y_range.start == 0 and page.wer_fig.y_range.end > 0  # nothing yet: still a range

    class Done:  # a job whose every measurement was 0 % (a perfect, tiny validation set)
        finished, running, started_at = False, True, 0.0
        fraction = 0.5

        def snapshot(self):
            return {"phase": "training", "step": 40, "max_steps": 100, "elapsed": 5.0, "time_limit_s": 90.0,
                    "losses": [(s, 1.0 / s) for s in range(1, 41)], "wers": [(s, 0.0) for s in range(0, 41, 10)],
                    "stop_requested": False, "stop_reason": "", "error": None, "version": 1, "run": None,
                    "model": "tiny", "training_s": 5.0, "time_up": False}

    page.job = Done()
    page.poll()
    assert list(page.wer_source.data["value"]) == [0.0] * 5
    assert page.wer_fig.y_range.end > page.wer_fig.y_range.start == 0
    assert page.wer_fig.x_range.end >= 40 and page.loss_fig.y_range.end >= 1.0


# --------------------------------------------------------------------------- the time limit


def test_the_trainer_owns_the_time_limit_and_the_page_says_what_the_file_says(app, tmp_path) -> None:
    """Issue 24 A4: the job stopped the trainer itself at the limit, so the file said "stopped by
    user" where the page said "time limit reached", and the last check was skipped. Issue 24 B7: a
    finished run kept its model (trainer, base model, caches) in memory."""
    import gc
    import weakref

    from workbench.adapters.io import read_submodel
    from workbench.app_pages.personalize import PersonalizePage
    from workbench.trainer import STOP_REASONS

    assert create(app, "spk-001", "consent-1", n=3) == "spk-001"
    app.pages["Record"].add_files(sample_files(16))
    made = []

    def factory(name):
        made.append(weakref.ref(backend := tiny_backend()))
        return backend

    config = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=100_000, time_limit_s=2.0, eval_every=1000,
                         batch_size=4, min_utterances=10, patience=0, speed_perturb=())
    job = jobs.TrainingJob(tmp_path / "data" / "spk-001", backend_factory=factory, model="tiny", config=config,
                           decoder="greedy")
    job.start()
    assert job.join(120) and job.phase == "done", job.error
    result = job.run.train_result
    evals = [h["step"] for h in result.history if h["kind"] == "eval"]
    assert result.stopped_reason == "time budget" and evals[-1] == result.steps > 0  # the last check ran
    # the ceiling holds on the wall clock too, up to one step or check slower than every one before it (a
    # busy CPU: 2.03 s was seen); tests/test_load_independence.py checks it exactly on a fake clock
    assert result.seconds <= 2.0 + 1.0
    stopped = read_submodel(job.run.submodel_path)[1]["training"]["stopped"]
    assert job.stop_reason == STOP_REASONS[stopped] == "time limit reached"
    page = PersonalizePage.__new__(PersonalizePage)  # only the status line
    page.job, page.ctx = job, AppContext(data_dir=tmp_path)
    text = page._status_html(job.snapshot())
    assert f"Finished (time limit reached) after {result.steps} training steps and {result.seconds:.0f} seconds" in text
    gc.collect()
    assert made and made[0]() is None, "the finished run still holds its base model"


def _job_on(app, tmp_path, made: list, **config) -> jobs.TrainingJob:
    """A training job on a new speaker with 16 sample recordings; ``made`` collects weak references
    to the base models it loads."""
    import weakref

    assert create(app, "spk-001", "consent-1", n=3) == "spk-001"
    app.pages["Record"].add_files(sample_files(16))

    def factory(name):
        made.append(weakref.ref(backend := tiny_backend()))
        return backend

    settings = {"adapter": ResidualConfig(bottleneck=4), "max_steps": 4, "time_limit_s": None, "eval_every": 2,
                "batch_size": 4, "min_utterances": 10, "patience": 0, "speed_perturb": (), **config}
    return jobs.TrainingJob(tmp_path / "data" / "spk-001", backend_factory=factory, model="tiny",
                            config=TrainConfig(**settings), decoder="greedy")


def test_the_page_gives_the_advice_after_no_improvement(app, tmp_path) -> None:
    """Issue 24 A6 (review): the page showed only the summary, not what to do next."""
    job = _job_on(app, tmp_path, [], learning_rate=1e-12)  # learns nothing: the same words after as before
    job.start()
    assert job.join(120) and job.phase == "done", job.error
    assert job.run.advice and job.run.advice.startswith("No improvement")
    page = app.pages["Personalize"]
    page._attach(job)  # as the page does for a run it started (start_training)
    page.poll()
    assert "no improvement" in page.result.object
    assert esc(job.run.advice) in page.result.object and "role='alert'" not in page.result.object
    assert page.see_results.visible


def test_a_stop_before_the_first_check_is_an_outcome_not_a_failure(app, tmp_path) -> None:
    """Issue 24 A5 (review): "Stopped before the first check" was shown as a red failure; it is a plain
    outcome with what to do, nothing is saved, and the run lets go of its model (B7)."""
    import gc

    made: list = []
    job = _job_on(app, tmp_path, made)
    job.stop()  # Stop pressed while the base model loads
    job.start()
    assert job.join(120) and job.phase == "nothing learned", (job.phase, job.error)
    assert job.finished and not job.running and job.error is None
    page = app.pages["Personalize"]
    page._attach(job)
    page.poll()
    shown = page.result.object
    assert "Stopped before the first check: nothing learned yet" in shown and "train again" in shown
    assert "longer time limit" in shown  # what to do, on this page
    assert "role='alert'" not in shown and "#b00020" not in shown  # neutral, not red
    assert "Stopped before the first check" in page.status.object
    assert not page.train.disabled and page.stop_button.disabled and not page.see_results.visible
    folder = tmp_path / "data" / "spk-001"
    assert not list(folder.glob("submodels/*")) and not list(folder.glob("reports/*"))
    gc.collect()
    assert made and made[0]() is None, "the stopped run still holds its base model"


# --------------------------------------------------------------------------- Results page


def test_after_a_second_run_the_new_run_is_shown(app, tmp_path) -> None:
    assert create(app, "spk-001", "consent-1") == "spk-001"
    reports = tmp_path / "data" / "spk-001" / "reports"
    reports.mkdir()
    row = "utt_id,reference,before,after\nu1,good morning,good evening,good morning\n"
    (reports / "report-spk-001-20240101-090000.csv").write_text(row)
    results = app.pages["Results"]
    results.load()
    assert results.choose.value == "report-spk-001-20240101-090000.csv"
    (reports / "report-spk-001-20240101-100000.csv").write_text(row)
    results.on_show()
    assert results.choose.value == "report-spk-001-20240101-100000.csv"  # the new run, not the old one
    results.choose.value = "report-spk-001-20240101-090000.csv"  # the person picks the old one
    results.on_show()
    assert results.choose.value == "report-spk-001-20240101-090000.csv"  # and it stays picked


def test_automatic_base_model_follows_the_speaker_kind(tmp_path) -> None:
    """'auto' (the first choice offered) trains simulated speakers on the built-in model and real
    people on Whisper tiny.en; the settings follow the chosen model (its own adapter)."""
    import shutil

    from workbench.app_pages.common import ModelDefaults, default_models
    from workbench.errors import WorkbenchError

    assert next(iter(default_models().values())) == "auto"
    root = Path(__file__).resolve().parent.parent / "sample_data"
    shutil.copytree(root / "sim-accent", tmp_path / "sim-accent")
    shutil.copytree(root / "real" / "real-allison", tmp_path / "real-allison")
    asked = []

    def factory(name):
        asked.append(name)
        raise WorkbenchError("stop here")  # the job fails plainly; only the choice matters

    for folder in ("sim-accent", "real-allison"):
        job = jobs.TrainingJob(tmp_path / folder, backend_factory=factory, model="auto", config=ModelDefaults(60.0))
        job.start()
        assert job.join(30) and job.phase == "failed" and job.error == "stop here"
    from workbench.models.choice import real_speech_model_available

    assert asked == ["tiny", "whisper-tiny.en" if real_speech_model_available() else "tiny"]
    assert ModelDefaults(60.0)(tiny_backend()).time_limit_s == 60.0


def test_model_defaults_match_the_train_config_defaults() -> None:
    from workbench.app_pages.common import ModelDefaults
    from workbench.workflow import default_config

    d, c = ModelDefaults(90.0)(tiny_backend()), default_config(tiny_backend())
    assert (d.max_steps, d.min_utterances) == (c.max_steps, c.min_utterances)  # the base model's own
    assert ModelDefaults().time_limit_s == c.time_limit_s == TrainConfig().time_limit_s  # one ceiling


def test_the_page_shows_the_time_left_from_the_measured_pace_and_says_when_the_ceiling_cut_the_run(tmp_path) -> None:
    """Issue 27: the page estimates the time left from the measured step time (an upper bound: early
    stopping usually ends the run sooner), and a run the time ceiling ended says so."""
    from workbench.app_pages.personalize import PersonalizePage

    now = [100.0]
    job = jobs.TrainingJob(tmp_path / "spk", backend_factory=None, model="tiny", config=tiny_config(15),
                           clock=lambda: now[0])
    job._on_start({"max_steps": 100, "time_limit_s": 900.0})
    assert job.time_left() is None  # no step measured yet
    now[0] += 20.0
    job._on_step({"step": 10, "loss": 1.0, "elapsed_s": 20.0})  # 2 s a step so far, checks included
    assert job.time_left() == pytest.approx(180.0)  # 90 steps to the step limit
    now[0] += 5.0
    assert job.time_left() == pytest.approx(175.0)  # the time since the last step is spent already
    page = PersonalizePage.__new__(PersonalizePage)  # only the status line
    page.job, page.ctx = job, AppContext(data_dir=tmp_path)
    text = page._status_html(job.snapshot())
    assert "step 10 of at most 100, 25 seconds, at most about 3 minutes left" in text
    job._set(time_limit_s=60.0)  # a low ceiling bounds the estimate: 35 s of it are left
    assert job.time_left() == pytest.approx(35.0)
    note = "stopped by the time limit at step 10 of about 100; the model may improve with more time"
    job._on_stop({"reason": "time budget", "step": 10, "elapsed_s": 60.0, "text": "time limit reached", "note": note})
    job._set(phase="done")
    assert job.time_left() is None
    text = page._status_html(job.snapshot())
    assert "Finished (time limit reached) after 10 training steps" in text
    assert "Stopped by the time limit at step 10 of about 100; the model may improve with more time" in text
