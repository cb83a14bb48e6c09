"""What a therapist or teacher sees on stderr (issue 24 item 10): our notes as plain lines,
no transformers deprecation warnings or progress bars from our own loading and decoding.

Checked in fresh processes: a note shows once per place, and transformers says each
deprecation once per process, so a warning seen by an earlier test would hide here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from workbench.notices import Notice, notify

TESTS = Path(__file__).resolve().parent


def _stderr_of(code: str, tmp_path: Path) -> str:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_a_note_is_a_user_warning_that_filters_and_records_see():
    with pytest.warns(UserWarning, match="record two more"):
        notify("record two more prompts")
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        notify("x")
    assert [w.category for w in heard] == [Notice]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)
        with pytest.raises(Notice):
            notify("y")


def test_a_note_reads_as_one_plain_line(tmp_path):
    err = _stderr_of("""
        import warnings
        from workbench.trainer import check_enough_data

        check_enough_data(10, 4, n_held_out_words=5, role="validation")
        warnings.warn("someone else's warning")
    """, tmp_path)
    lines = err.splitlines()
    assert lines[0].startswith("Note: the validation set has only 5 words, so its WER is not reliable"), err
    assert ".py:" not in lines[0] and "UserWarning" not in lines[0]  # was: /path/run.py:5: UserWarning: ...
    assert "run.py:6: UserWarning: someone else's warning" in err  # other warnings are shown as before


def test_quiet_transformers_restores_the_progress_bar_setting():
    pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    from workbench.models.hf import quiet_transformers

    was = hf_logging.is_progress_bar_enabled()
    try:
        hf_logging.enable_progress_bar()
        with quiet_transformers():
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        with quiet_transformers():
            pass
        assert not hf_logging.is_progress_bar_enabled()  # the user's choice stays
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def test_loading_and_decoding_whisper_print_no_machine_noise(tmp_path):
    pytest.importorskip("transformers")
    err = _stderr_of(f"""
        from pathlib import Path
        from _models import hf_whisper_dir, noise_waves
        from transformers.utils import logging as hf_logging
        from workbench.models import load_base_model

        folder = hf_whisper_dir(Path({str(tmp_path / "whisper")!r}))
        hf_logging.enable_progress_bar()  # as in a fresh session
        backend = load_base_model(folder)
        backend.transcribe(noise_waves(2))
        print("done")
    """, tmp_path)
    assert "Loading weights" not in err, err  # transformers' progress bar
    assert "past_key_values" not in err and "deprecated" not in err, err
