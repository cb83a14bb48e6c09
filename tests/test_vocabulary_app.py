"""The app's word list: edited on the Speakers page, saved in the speaker folder, used by "Try a phrase"."""

from __future__ import annotations

import pytest

pn = pytest.importorskip("panel")

from _models import tiny_backend

from workbench.app_pages.common import AppContext
from workbench.app_pages.shell import WorkbenchApp
from workbench.vocabulary import VOCABULARY_FILE, speaker_vocabulary

pytestmark = [pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"), pytest.mark.timeout(180)]


@pytest.fixture
def app(tmp_path) -> WorkbenchApp:
    ctx = AppContext(data_dir=tmp_path / "data", backend_factory=lambda name: tiny_backend(), decoder="greedy")
    ctx.data_dir.mkdir(parents=True)
    return WorkbenchApp(ctx)


def _create(app: WorkbenchApp, sid: str) -> None:
    page = app.pages["Speakers"]
    page.new_id.value, page.consent_id.value, page.n_prompts.value = sid, "consent-1", 5
    assert page.create() == sid


def test_the_word_list_is_saved_per_speaker_and_a_bad_one_loses_nothing(app) -> None:
    page = app.pages["Speakers"]
    assert not page.words_box.visible
    _create(app, "spk-001")
    folder = app.ctx.data_dir / "spk-001"
    assert page.words_box.visible and page.words.value == ""
    page.words.value = "Siobhan\n\nAuntie Margaret\nsiobhan\n"
    assert page.save_words() and "Saved 2 words" in page.words_message.object
    assert speaker_vocabulary(folder) == ["Siobhan", "Auntie Margaret"]
    page.words.value = "Siobhan\n" + "x" * 100
    assert not page.save_words() and "Not saved" in page.words_message.object and "line 2" in page.words_message.object
    assert speaker_vocabulary(folder) == ["Siobhan", "Auntie Margaret"]
    _create(app, "spk-002")  # another speaker: their own (empty) list
    assert page.words.value == ""
    assert page.open("spk-001") and page.words.value == "Siobhan\nAuntie Margaret\n"


def test_a_damaged_file_is_reported_and_can_be_replaced(app) -> None:
    page = app.pages["Speakers"]
    _create(app, "spk-001")
    folder = app.ctx.data_dir / "spk-001"
    (folder / VOCABULARY_FILE).write_bytes(b"Jamal\n\xff\xfe\n")
    assert page.open("spk-001")
    assert page.words.value == "" and "not plain text" in page.words_message.object
    page.words.value = "Jamal"
    assert page.save_words() and speaker_vocabulary(folder) == ["Jamal"]
