"""The speaker folder's training mark (workflow/busy.py): it goes when the run ends, and a mark whose
run is over never blocks (issue 24 review: notebook 03 left sample_data/<speaker>/.training behind)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.workflow import busy
from workbench.workflow.busy import STALE_AFTER_S, TRAINING_MARK, training_in_progress, training_lock

pytestmark = pytest.mark.skipif(busy._fcntl is None, reason="no fcntl: nothing is ever marked (Windows)")
ROOT = Path(__file__).resolve().parents[1]


def _holder(root: Path, script: str) -> tuple[subprocess.Popen, list[str]]:
    """A Python process that runs ``script`` (with ``root`` and ``training_lock`` defined) and prints
    'ready ...': ``(process, the words after 'ready')``."""
    code = "import os, sys, time\nfrom workbench.workflow.busy import training_lock\n" \
           f"root = {str(root)!r}\n" + textwrap.dedent(script)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    said = proc.stdout.readline().split()
    assert said[:1] == ["ready"], "the holder did not start"
    return proc, said[1:]


def test_the_mark_goes_when_the_run_ends(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        with training_lock(tmp_path):
            mark = tmp_path / TRAINING_MARK
            assert training_in_progress(tmp_path) == "a training run is using this speaker's folder"
            assert mark.stat().st_mode & 0o777 == 0o600  # private, as every file of the folder
            assert json.loads(mark.read_text())["pid"] == os.getpid()
    finally:
        os.umask(old)
    assert not mark.exists() and training_in_progress(tmp_path) is None
    with pytest.raises(KeyboardInterrupt), training_lock(tmp_path):  # Stop, an error: the same
        raise KeyboardInterrupt
    assert not mark.exists()


def test_a_killed_run_leaves_no_busy_mark(tmp_path) -> None:
    proc, _ = _holder(tmp_path, """
        with training_lock(root):
            print("ready", flush=True)
            time.sleep(120)
    """)
    try:
        assert training_in_progress(tmp_path) is not None  # a live run in another process
        with training_lock(tmp_path):  # a second run is not marked (training decides), and removes nothing
            pass
        assert (tmp_path / TRAINING_MARK).exists() and training_in_progress(tmp_path) is not None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / TRAINING_MARK).exists()  # the crash left the file...
    assert training_in_progress(tmp_path) is None  # ...which marks nothing
    with training_lock(tmp_path):  # the next run takes it over
        assert training_in_progress(tmp_path) is not None
    assert not (tmp_path / TRAINING_MARK).exists()


def test_a_lock_kept_by_a_leftover_child_does_not_block(tmp_path) -> None:
    """The run's process died, but a child it forked still has the mark open (so the lock is held)."""
    proc, said = _holder(tmp_path, """
        with training_lock(root):
            child = os.fork()
            if child == 0:
                time.sleep(120)
                os._exit(0)
            print("ready", child, flush=True)
            os._exit(0)  # dies like a crash: no clean-up
    """)
    proc.wait()  # gone (not a zombie: waited for)
    child = int(said[0])
    try:
        assert (tmp_path / TRAINING_MARK).exists()
        assert training_in_progress(tmp_path) is None  # its run's process is gone
        with training_lock(tmp_path):  # taken over: a new mark, held by this process
            assert training_in_progress(tmp_path) is not None
        assert not (tmp_path / TRAINING_MARK).exists()
    finally:
        os.kill(child, signal.SIGKILL)


def test_an_old_mark_is_stale_even_when_held(tmp_path) -> None:
    with training_lock(tmp_path):
        mark = tmp_path / TRAINING_MARK
        assert not busy._stale(mark)
        assert busy._stale(mark, now=time.time() + STALE_AFTER_S + 1)
        mark.write_text("not a mark")  # untrusted content: judged by the file's age
        assert not busy._stale(mark) and busy._stale(mark, now=time.time() + STALE_AFTER_S + 1)


def test_training_leaves_no_mark_in_the_speaker_folder(tmp_path) -> None:
    from _models import noise_waves, tiny_backend

    from workbench.adapters import ResidualConfig
    from workbench.corpus import SpeakerCorpus
    from workbench.trainer import TrainConfig
    from workbench.workflow import prepare, train

    prompts = [f"phrase number {w}" for w in ("one", "two", "three", "four", "five", "six", "seven", "eight")]
    corpus = SpeakerCorpus.create(tmp_path, "spk-mark", prompts=prompts, simulated=True)
    for i, w in enumerate(noise_waves(16, seed=4, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=prompts[i % len(prompts)])
    config = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=2, time_limit_s=None, eval_every=1,
                         batch_size=4, min_utterances=4, speed_perturb=())
    plan = prepare(corpus.root, backend=tiny_backend(), config=config)
    seen = []
    train(plan, progress=False, callbacks={"on_step": lambda e: seen.append(training_in_progress(corpus.root))})
    assert seen and all(seen)  # marked while it trained
    assert not (corpus.root / TRAINING_MARK).exists()
    plan = prepare(corpus.root, backend=tiny_backend(), config=config)
    plan.trainer.fit = lambda: (_ for _ in ()).throw(RuntimeError("out of memory"))  # a run that fails
    with pytest.raises(RuntimeError):
        train(plan, progress=False)
    assert not (corpus.root / TRAINING_MARK).exists()


def test_git_ignores_the_mark() -> None:
    assert TRAINING_MARK in (ROOT / ".gitignore").read_text().splitlines()
