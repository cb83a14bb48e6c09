"""Several processes via torchrun: the same steps as one process, one stop for all, the bank job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from workbench import distributed
from workbench.errors import TrainingError
from workbench.models import load_base_model

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only")

# Trains a 2-speaker bank of the tiny random model for 4 steps (batch of 5: uneven shares,
# SpecAugment on, so its draws must follow each example's place in the whole batch), then
# a second run that process 1 stops at step 2. Rank 0 writes what it saw.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from workbench import distributed
    from workbench.adapters import ResidualConfig
    from workbench.augment import POLICIES
    from workbench.dataset import Example
    from workbench.trainer import TrainConfig, Trainer
    from _models import noise_waves, tiny_backend

    TEXTS = ["turn on the light", "call my sister", "i am hungry", "good morning"]


    def trainer():
        train = [Example(w, TEXTS[i % 4], i % 2, f"t{i}") for i, w in enumerate(noise_waves(10))]
        valid = [Example(w, TEXTS[i % 4], i % 2, f"v{i}") for i, w in enumerate(noise_waves(5, seed=1))]
        cfg = TrainConfig(adapter=ResidualConfig(bottleneck=4), max_steps=4, time_limit_s=None, batch_size=5,
                          eval_every=2, min_utterances=4, patience=0, speed_perturb=(),
                          specaugment=POLICIES["librispeech_adaptive"], learning_rate=1e-2)
        return Trainer(tiny_backend(), train, valid, cfg)


    def run(stop_at=None):
        t = trainer()
        if stop_at is not None and distributed.rank_and_size()[0] == 1:
            t.on("on_step", lambda e: t.stop() if e["step"] == stop_at else None)
        result = t.fit()
        return {"params": [p.detach().tolist() for p in t.params], "reason": result.stopped_reason,
                "steps": result.steps, "history": result.history}


    distributed.init_from_env("cpu")
    out = {"world": distributed.rank_and_size()[1], "full": run(), "stopped": run(stop_at=2)}
    if distributed.is_main():
        with open(sys.argv[1], "w") as f:
            json.dump(out, f)
    distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "script.py").write_text(_SCRIPT)
    proc = _torchrun([str(tmp / "script.py"), str(tmp / "out.json")], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "out.json").read_text())


def _one_process(stop_at=None) -> dict:
    namespace: dict = {}
    exec(compile(_SCRIPT.split("distributed.init_from_env")[0], "script", "exec"), namespace)
    return namespace["run"](stop_at)


def test_two_processes_take_the_same_steps_as_one(two_process_run) -> None:
    assert two_process_run["world"] == 2
    two, one = two_process_run["full"], _one_process()
    assert two["steps"] == one["steps"] == 4 and two["reason"] == one["reason"] == "max steps"
    for a, b in zip(two["params"], one["params"], strict=True):  # the kept adapter
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5), "weights differ from one process"
    losses = lambda h: [e["loss"] for e in h if e["kind"] == "step"]  # noqa: E731
    evals = lambda h: [(e["step"], e["wer"], e["cer"]) for e in h if e["kind"] == "eval"]  # noqa: E731
    assert losses(two["history"]) == pytest.approx(losses(one["history"]), rel=1e-5)
    assert evals(two["history"]) == evals(one["history"])  # every process scored the whole validation set
    moved = [e["loss"] for e in two["history"] if e["kind"] == "step"]
    assert len(set(moved)) > 1  # it trained


def test_a_stop_in_one_process_stops_every_process(two_process_run) -> None:
    run = two_process_run["stopped"]  # process 1 was stopped at step 2; rank 0 reports
    assert run["reason"] == "stopped by user" and run["steps"] == 2


_FAILING = textwrap.dedent(
    """
    from workbench import distributed
    exec(open("script.py").read().split("distributed.init_from_env")[0])  # trainer() and run()
    distributed.init_from_env("cpu")
    t = trainer()
    if distributed.rank_and_size()[0] == 1:
        t.on("on_step", lambda e: 1 / 0 if e["step"] == 2 else None)
    ok = False
    try:
        t.fit()
        ok = True
    finally:
        distributed.shutdown(wait=ok)
    """
)


def test_an_error_in_one_process_ends_the_job_instead_of_hanging(tmp_path) -> None:
    (tmp_path / "script.py").write_text(_SCRIPT)
    (tmp_path / "failing.py").write_text(_FAILING)
    t0 = time.monotonic()
    proc = _torchrun([str(tmp_path / "failing.py")], cwd=tmp_path, timeout=240)
    assert proc.returncode != 0 and "ZeroDivisionError" in proc.stderr
    assert time.monotonic() - t0 < 120  # a wait at the barrier would hang for gloo's 30-minute timeout


def test_one_process_helpers_are_the_identity() -> None:
    assert distributed.rank_and_size() == (0, 1) and distributed.is_main()
    assert distributed.sum_scalars(1.5, True) == [1.5, 1.0]
    assert distributed.any_true(False) is False and distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.sum_gradients([p], scale=0.5)
    assert p.grad.tolist() == [1.0, 1.0, 1.0]
    distributed.broadcast_parameters([p])
    distributed.shutdown()  # nothing to leave


def test_init_from_env(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env("cpu") == "cpu"
    with pytest.raises(TrainingError, match="device must be"):
        distributed.init_from_env("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="sees no GPU here; use --device cpu"):
            distributed.init_from_env("cuda")
        assert distributed.init_from_env("auto") == "cpu"


def test_speaker_folders_errors(tmp_path) -> None:
    from workbench.workflow import speaker_folders

    with pytest.raises(TrainingError, match="no speaker folders in"):
        speaker_folders([tmp_path])
    with pytest.raises(TrainingError, match="given twice: sim-accent"):
        speaker_folders([SAMPLE / "sim-accent", SAMPLE / "sim-accent"])
    assert len(speaker_folders([SAMPLE])) == 8


def test_train_bank_cli_under_torchrun(tmp_path) -> None:
    from workbench.adapters import SubmodelBank

    out = tmp_path / "bank.safetensors"
    proc = _torchrun(["-m", "workbench.cli", "train-bank", str(SAMPLE / "sim-accent"), str(SAMPLE / "sim-stutter"),
                      "--out", str(out), "--steps", "2", "--decoder", "greedy", "--device", "cpu"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Bank: ") == 1  # only rank 0 prints and writes
    assert "2 speakers in one bank: 2 steps" in proc.stdout and "2 processes" in proc.stdout
    assert "sim-accent" in proc.stdout and "sim-stutter" in proc.stdout
    bank = SubmodelBank.from_files(load_base_model("tiny"), [out])
    assert bank.speaker_ids == ["sim-accent", "sim-stutter"]


def test_train_bank_in_one_process(tmp_path, capsys) -> None:
    from workbench.adapters import load_submodel
    from workbench.trainer import TrainConfig
    from workbench.workflow import train_bank

    config = TrainConfig(max_steps=2, eval_every=1, speed_perturb=())
    run = train_bank([SAMPLE / "sim-accent", SAMPLE / "sim-parkinsonian"], tmp_path / "bank.safetensors", config=config,
                     progress=False)  # the lexicon decoder, as evaluate_speaker below
    assert run.speaker_ids == ["sim-accent", "sim-parkinsonian"] and set(run.comparisons) == set(run.speaker_ids)
    assert [len(c.utterances) for c in run.comparisons.values()] == [20, 22]  # + 2 never trained on (below)
    assert "sim-parkinsonian" in run.table()
    adapted, meta = load_submodel(load_base_model("tiny"), run.path)
    assert adapted.num_speakers == 2 and meta["speaker_ids"] == run.speaker_ids
    used = meta["training"]["speakers"]["sim-accent"]
    tested = {u.utt_id for u in run.comparisons["sim-accent"].utterances}
    assert used["utt_ids"] and not tested & (set(used["utt_ids"]) | set(used["valid_utt_ids"]))
    # no speaker's test phrase was trained on, by any speaker (shared weights would have heard it);
    # two of sim-accent's test phrases are sim-parkinsonian's training prompts in the plain splits
    from workbench.text import normalize_text

    test_texts = {u.reference for c in run.comparisons.values() for u in c.utterances}
    assert test_texts and not test_texts & {normalize_text(p) for p in meta["training"]["prompts"]}

    # the bank file with the one-speaker tools: its own row, its own held-out takes
    from workbench.cli import main
    from workbench.workflow import evaluate_speaker

    again = evaluate_speaker(SAMPLE / "sim-parkinsonian", adapter=run.path).comparison
    first = run.comparisons["sim-parkinsonian"]
    assert {u.utt_id for u in again.utterances} == {u.utt_id for u in first.utterances}
    assert (again.wer_before, again.wer_after) == (first.wer_before, first.wer_after)
    with pytest.raises(TrainingError, match=r"a bank of 2 speakers \(sim-accent, sim-parkinsonian\): it does not hold"):
        evaluate_speaker(SAMPLE / "sim-typical-espeak", adapter=run.path)
    take = str(next((SAMPLE / "sim-parkinsonian" / "audio").iterdir()))
    assert main(["transcribe", take, "--adapter", str(run.path)]) == 2
    assert "choose one (on the command line: --speaker ID)" in capsys.readouterr().err
    assert main(["transcribe", take, "--adapter", str(run.path), "--speaker", "sim-parkinsonian"]) == 0
    assert capsys.readouterr().out.startswith(take + "\t")




@pytest.mark.parametrize("argv", [
    ["personalize", str(SAMPLE / "sim-accent"), "--family", "hra"],
    ["train-bank", str(SAMPLE), "--out", "b.safetensors", "--family", "hra"],
])
def test_cli_adapter_choice_brings_its_learning_rate(captured, argv) -> None:
    """``--family hra`` trains HRA at HRA's learning rate (it once kept LoRA's)."""
    from workbench.adapters import HRAConfig
    from workbench.cli import main

    assert main(argv) == 2
    config = captured["config"]
    assert isinstance(config.adapter, HRAConfig) and config.learning_rate == HRAConfig.learning_rate != 3e-3


def test_cli_speaker_space(captured, capsys) -> None:
    from workbench.cli import main

    assert main(["train-bank", str(SAMPLE), "--out", "b.safetensors", "--speaker-space", "8", "--steps", "7"]) == 2
    config = captured["config"]
    assert config.adapter.space == "embedding" and config.adapter.embed_dim == 8 and config.max_steps == 7
    assert not config.per_speaker_selection
    assert main(["train-bank", str(SAMPLE), "--out", "b.safetensors", "--per-speaker-selection"]) == 2
    assert captured["config"].per_speaker_selection
    assert main(["train-bank", str(SAMPLE), "--out", "b.safetensors", "--speaker-space", "8", "--family", "lora"]) == 2
    assert "--speaker-space learns HRA heads" in capsys.readouterr().err
    captured.clear()
    assert main(["train-bank", str(SAMPLE), "--out", "b.safetensors", "--speaker-space", "0"]) == 2
    assert "config" not in captured and "at least 1" in capsys.readouterr().err  # not silently another adapter
