"""The ``tts`` marker (tests/conftest.py): a missing speech engine skips with the reason,
unless WORKBENCH_REQUIRE_TTS=1, where it fails (issue 16: the README promised this)."""

from __future__ import annotations

import conftest
import pytest

from workbench import simulate


class _Item:
    def __init__(self, mark, fixturenames=()):
        self._mark, self.fixturenames = mark, list(fixturenames)

    def get_closest_marker(self, name):
        return self._mark if name == "tts" else None


@pytest.fixture
def only_espeak(monkeypatch):
    monkeypatch.setattr(simulate, "available_engines", lambda: ["espeak"])
    monkeypatch.delenv("WORKBENCH_REQUIRE_TTS", raising=False)


def test_a_missing_engine_skips_with_the_reason(only_espeak):
    item = _Item(pytest.mark.tts("espeak", "flite").mark)
    with pytest.raises(pytest.skip.Exception, match=r"needs flite, which is not installed \(sudo apt-get install "
                                                     r"flite\); WORKBENCH_REQUIRE_TTS=1 makes this fail"):
        conftest.pytest_runtest_setup(item)
    conftest.pytest_runtest_setup(_Item(pytest.mark.tts("espeak").mark))  # present: runs
    conftest.pytest_runtest_setup(_Item(pytest.mark.tts.mark, ["espeak", "tmp_path"]))  # bare: its fixtures
    with pytest.raises(pytest.skip.Exception, match="text2wave"):
        conftest.pytest_runtest_setup(_Item(pytest.mark.tts.mark))  # bare, no engine fixture: all engines


def test_a_missing_engine_fails_where_engines_are_required(only_espeak, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REQUIRE_TTS", "1")
    with pytest.raises(pytest.fail.Exception, match=r"needs flite \(WORKBENCH_REQUIRE_TTS=1\)"):
        conftest.pytest_runtest_setup(_Item(pytest.mark.tts("flite").mark))


def test_an_unknown_engine_name_is_a_mistake_in_the_test(only_espeak):
    with pytest.raises(pytest.fail.Exception, match="unknown engine"):
        conftest.pytest_runtest_setup(_Item(pytest.mark.tts("espeak-ng").mark))


def test_the_heldout_voices_test_names_its_engines():
    import test_models_tiny

    marks = {m.name: m for m in test_models_tiny.test_shipped_model_accuracy_on_heldout_voices.pytestmark}
    engines = set(marks["tts"].args)
    from workbench.models.tiny import default_model_dir

    config = default_model_dir() / "config.json"
    if config.is_file():
        import json

        voices = json.loads(config.read_text())["eval"]["heldout_voices"][:4]  # those the test uses
        assert {v.split(":")[0] for v in voices} <= engines
