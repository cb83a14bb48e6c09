"""Which Submodel is a speaker's personal model, and every entry point saying which (issue 24 A1, A5, A6, A13, B13).

- :func:`workbench.workflow.personal_submodel`: the user's pick, else the newest run that beat
  the base model (metadata untrusted), else none; :func:`choose_personal_submodel` pins it;
- ``load_base_model("auto")`` and other non-model names never reach the hub client;
- ``evaluate`` and ``transcribe`` say which Submodel they use; ``transcribe --server`` says what
  it ignores and when the server has no Submodel for ``--speaker``;
- the clinic server refuses a Submodel with adapters on blocks the device runs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from workbench.adapters import LoRAConfig, inject
from workbench.corpus import SpeakerCorpus
from workbench.errors import TrainingError, WorkbenchError
from workbench.workflow import (
    choose_personal_submodel,
    chosen_submodel,
    personal_submodel,
    run_advice,
    submodel_runs,
)
from workbench.workflow.personal import PICK_FILE, RECORD_MORE_BELOW

from _models import tiny_backend

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # Panel 1.x's widget names
GOOD = {"wer_before": 0.141, "wer_after": 0.09, "held_out_utterances": 12}
WORSE = {"wer_before": 0.141, "wer_after": 0.156, "held_out_utterances": 12}


@pytest.fixture
def speaker(tmp_path: Path) -> SpeakerCorpus:
    return SpeakerCorpus.create(tmp_path, "spk-1", prompts=["good morning", "thank you"])


def _save(root: Path, name: str, metrics: dict | None, *, ids=("spk-1",), backend=None, age: float = 0.0,
          training: dict | None = None) -> Path:
    """A Submodel file in ``root/submodels`` with the given metadata; file time ``age`` seconds back."""
    adapted = inject(backend or tiny_backend(), LoRAConfig(rank=2, num_speakers=len(ids)))
    path = adapted.save(root / "submodels" / name, speaker_ids=list(ids), metrics=metrics, training=training)
    adapted.remove()
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


# --------------------------------------------------------------------------- which run


def test_the_newest_run_that_beat_the_base_model_is_the_personal_model(speaker) -> None:
    root = speaker.root
    assert personal_submodel(root) is None  # no runs
    good = _save(root, "lora-1.safetensors", GOOD, age=100)
    _save(root, "lora-2.safetensors", WORSE, age=50)  # newer, but no improvement
    chosen = personal_submodel(root)
    assert chosen is not None and chosen.path == good and chosen.base_model == "test-tiny"
    assert chosen.reason == "the newest run that beat the base model (14.1 % -> 9.0 %)"
    newer_good = _save(root, "lora-3.safetensors", {**GOOD, "wer_after": 0.12}, age=10)
    assert personal_submodel(root).path == newer_good
    assert [r.path.name for r in submodel_runs(root)] == ["lora-3.safetensors", "lora-2.safetensors",
                                                          "lora-1.safetensors"]


@pytest.mark.parametrize("metrics", [
    {},  # missing
    {"wer_before": "0.5", "wer_after": "0.1", "held_out_utterances": 12},  # text
    {"wer_before": 0.5, "wer_after": float("nan"), "held_out_utterances": 12},
    {"wer_before": 0.5, "wer_after": -1.0, "held_out_utterances": 12},
    {"wer_before": True, "wer_after": False, "held_out_utterances": 12},
    {"wer_before": 0.5, "wer_after": 0.1},  # no test phrases counted
    {"wer_before": 0.5, "wer_after": 0.1, "held_out_utterances": 0},
    {"wer_before": 1e308 * 10, "wer_after": 0.1, "held_out_utterances": 12},  # inf
    {"wer_before": [0.5], "wer_after": {"x": 1}, "held_out_utterances": 12},
])
def test_missing_or_garbage_figures_count_as_did_not_beat(speaker, metrics) -> None:
    _save(speaker.root, "lora-1.safetensors", metrics)
    assert personal_submodel(speaker.root) is None


def test_a_damaged_file_or_another_speakers_file_is_never_chosen(speaker) -> None:
    root = speaker.root
    _save(root, "lora-other.safetensors", GOOD, ids=("spk-2",), age=5)
    (root / "submodels" / "lora-broken.safetensors").write_bytes(b"\x00" * 64)
    assert personal_submodel(root) is None
    runs = {r.path.name: r for r in submodel_runs(root)}
    assert "not 'spk-1'" in runs["lora-other.safetensors"].problem and runs["lora-broken.safetensors"].problem
    # a bank holding this speaker: its own row of figures counts
    bank = _save(root, "bank.safetensors", {"spk-1": GOOD, "spk-9": WORSE}, ids=("spk-1", "spk-9"))
    assert personal_submodel(root).path == bank


def test_the_users_pick_wins_and_is_checked(speaker) -> None:
    root = speaker.root
    _save(root, "lora-1.safetensors", GOOD, age=100)
    worse = _save(root, "lora-2.safetensors", WORSE, age=50)
    picked = choose_personal_submodel(root, worse)
    assert picked.path == worse and picked.reason.startswith("chosen by you on 20")
    assert personal_submodel(root) == picked and chosen_submodel(root) == "lora-2.safetensors"
    assert json.loads((root / PICK_FILE).read_text())["file"] == "lora-2.safetensors"
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]  # written atomically
    # refused picks change nothing
    outside = root.parent / "elsewhere.safetensors"
    shutil.copy(worse, outside)
    for bad in (outside, "../elsewhere.safetensors", "nope.safetensors", "speaker.json"):
        with pytest.raises(TrainingError):
            choose_personal_submodel(root, bad)
        assert personal_submodel(root).path == worse
    other = _save(root, "lora-other.safetensors", GOOD, ids=("spk-2",))
    with pytest.raises(TrainingError, match="not 'spk-1'"):
        choose_personal_submodel(root, other.name)
    # the picked file disappears: back to the automatic choice, and the reason says so
    worse.unlink()
    auto = personal_submodel(root)
    assert auto.path.name == "lora-1.safetensors" and "the run you chose cannot be used" in auto.reason
    assert choose_personal_submodel(root, None).path.name == "lora-1.safetensors"
    assert not (root / PICK_FILE).exists()


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"file": 7}', '{"file": "../../etc/passwd"}',
                                     '{"file": "/abs/lora-1.safetensors"}',
                                     pytest.param("[" * 100_000, id="deep-nesting")])
def test_a_damaged_or_crafted_pick_file_falls_back_to_the_automatic_choice(speaker, content) -> None:
    good = _save(speaker.root, "lora-1.safetensors", GOOD)
    (speaker.root / PICK_FILE).write_text(content)
    assert personal_submodel(speaker.root).path == good


# --------------------------------------------------------------------------- advice after no improvement


def test_advice_after_no_improvement_says_what_to_do() -> None:
    assert run_advice(0.20, 0.10, {}) is None  # it helped: no advice
    good_base = run_advice(0.036, 0.036, {"utterances": 200})
    assert "already understands this speaker well" in good_base and "Do not use this run" in good_base
    few = run_advice(0.141, 0.156, {"utterances": 12, "minutes": 0.8, "steps": 80, "best_step": 40,
                                    "stopped": "early stop"})
    assert "Record more: this run learned from 12 recordings (0.8 minutes)" in few and "Train longer" not in few
    longer = run_advice(0.5, 0.5, {"utterances": RECORD_MORE_BELOW, "steps": 80, "best_step": 80,
                                   "stopped": "time budget"})
    assert "Train longer" in longer and "Record more" not in longer
    garbage = run_advice(0.5, 0.6, {"utterances": "many", "steps": [1], "best_step": None, "minutes": "x"})
    assert garbage.startswith("No improvement") and "Do not use this run" in garbage


# --------------------------------------------------------------------------- offline: "auto" is not a hub id


@pytest.fixture
def hub_guard(monkeypatch):
    """Every way to reach the model hub raises (and is recorded); cache-only look-ups are allowed."""
    import huggingface_hub
    import transformers

    calls: list[str] = []

    def refuse(name):
        def fn(*args, **kwargs):
            if kwargs.get("local_files_only"):
                raise OSError("not in the local cache (test)")
            calls.append(f"{name}{args[:1]}")
            raise AssertionError(f"{name} reached the hub client with {args[:1]}")
        return fn

    for mod, attr in ((huggingface_hub, "snapshot_download"), (huggingface_hub, "hf_hub_download"),
                      (huggingface_hub, "model_info")):
        monkeypatch.setattr(mod, attr, refuse(attr))
    for cls in ("AutoConfig", "AutoProcessor", "AutoModelForCTC", "WhisperForConditionalGeneration"):
        monkeypatch.setattr(getattr(transformers, cls), "from_pretrained", refuse(f"{cls}.from_pretrained"))
    return calls


@pytest.mark.parametrize("name", ["auto", "Auto", "default", "personal", "", "ct2:whisper-folder",
                                  "a name with spaces", "https://example.org/model"])
def test_auto_and_other_non_model_names_never_reach_the_hub_client(hub_guard, name) -> None:
    from workbench.models import load_base_model

    with pytest.raises(WorkbenchError) as err:
        load_base_model(name)
    assert "Traceback" not in str(err.value) and hub_guard == []


def test_a_hub_id_read_from_a_file_loads_only_from_the_cache(hub_guard) -> None:
    from workbench.models.loading import load_base_model, offline_source

    with pytest.raises(WorkbenchError, match="not downloaded unasked"):
        load_base_model("someone/some-asr-model", offline=True)
    with pytest.raises(WorkbenchError, match="not downloaded unasked"):
        offline_source("someone/some-asr-model")
    assert hub_guard == []
    assert load_base_model("workbench-tiny", offline=True).name == "workbench-tiny"


# --------------------------------------------------------------------------- the CLI says which model


def _speaker_with_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of a sample speaker with two Submodels of the built-in model: one beat the base, a newer one not."""
    from workbench.models import load_base_model

    root = tmp_path / "sim-accent"
    shutil.copytree(SAMPLE / "sim-accent", root)
    for old in root.glob("submodels/*"):
        old.unlink()
    backend = load_base_model("tiny")
    good = _save(root, "lora-20260101-100000.safetensors", GOOD, ids=("sim-accent",), backend=backend, age=100)
    worse = _save(root, "lora-20260102-100000.safetensors", WORSE, ids=("sim-accent",), backend=backend, age=10)
    return root, good, worse


def test_evaluate_uses_and_names_the_personal_model(tmp_path, capsys) -> None:
    from workbench.cli import main

    root, good, worse = _speaker_with_runs(tmp_path)
    assert main(["evaluate", str(root), "--decoder", "greedy"]) == 0
    err = capsys.readouterr().err
    assert f"Personal model: {good.name} (the newest run that beat the base model (14.1 % -> 9.0 %))" in err
    assert "the personal adapter was trained on it" in err  # its own base model
    choose_personal_submodel(root, worse)
    assert main(["evaluate", str(root), "--decoder", "greedy"]) == 0
    assert f"Personal model: {worse.name} (chosen by you on" in capsys.readouterr().err


def test_transcribe_says_which_submodel_it_uses(tmp_path, capsys) -> None:
    from workbench.cli import main

    root, good, _ = _speaker_with_runs(tmp_path)
    audio = str(next((root / "audio").glob("*.flac")))
    assert main(["transcribe", audio, "--model", "tiny"]) == 0
    assert "Personal model: none (no --adapter given)" in capsys.readouterr().err
    assert main(["transcribe", audio, "--adapter", str(good)]) == 0
    assert f"Personal model: {good.name} (given with --adapter)" in capsys.readouterr().err


def test_transcribe_server_says_what_it_ignores_and_a_speaker_it_does_not_hold(tmp_path, capsys,
                                                                              monkeypatch) -> None:
    """Issue 24 A13/B13: the server answered ``submodel: false`` for a mistyped --speaker and nothing was said."""
    from workbench.cli import main
    from workbench.device_tuning import client

    class Server:  # the clinic server's answers, as ServerCore gives them for a speaker it does not hold
        def __init__(self, url, compressor, token=None, model="tiny"):
            pass

        def transcribe(self, wav, speaker=""):
            return {"text": "good morning", "speaker": speaker, "submodel": False, "batch_size": 1,
                    "bytes_sent": 100}

    monkeypatch.setattr(client, "DeviceClient", Server)
    audio = str(next((SAMPLE / "sim-accent" / "audio").glob("*.flac")))
    url = "http://127.0.0.1:8200/asr"
    assert main(["transcribe", audio, "--server", url, "--speaker", "spk-0l7", "--decoder", "lexicon"]) == 0
    err = capsys.readouterr().err
    assert "--decoder is ignored with --server" in err
    assert "the server holds no Submodel for speaker 'spk-0l7', so the base model alone transcribed 1 of 1" in err
    assert main(["transcribe", audio, "--server", url]) == 0  # no speaker asked: the base model is expected
    assert "no Submodel" not in capsys.readouterr().err
    held = {"text": "good morning", "speaker": "spk-017", "submodel": True, "batch_size": 1, "bytes_sent": 100}
    monkeypatch.setattr(Server, "transcribe", lambda self, wav, speaker="": dict(held))
    assert main(["transcribe", audio, "--server", url, "--speaker", "spk-017"]) == 0
    err = capsys.readouterr().err
    assert "Personal model: the server's Submodel for 'spk-017'" in err and "ignored" not in err


def _server_submodels(tmp_path) -> tuple[dict[str, Path], int, int]:
    """Submodels with LoRA on every block, on the blocks above the default compressor's split, and one
    more: ``(paths, split_layer, num_layers)``."""
    from workbench.adapters import SubmodelBank
    from workbench.device_tuning.compressor import default_compressor, load_compressor
    from workbench.models import load_base_model

    backend = load_base_model("tiny").freeze()
    k, n = load_compressor(default_compressor())[1]["split_layer"], backend.num_layers
    paths = {}
    for name, top in (("all", 0), ("fits", n - k), ("one-too-many", n - k + 1)):
        bank = SubmodelBank(backend, LoRAConfig(rank=2, top_layers=top), [f"spk-{name}"])
        with torch.no_grad():
            for p in bank.adapted.trainable_parameters():
                p.add_(0.1)
        paths[name] = bank.save(tmp_path / f"{name}.safetensors")
        bank.adapted.remove()
    return paths, k, n


def test_the_clinic_server_refuses_a_submodel_it_could_only_partly_apply(tmp_path) -> None:
    """Issue 24 A13: LoRA on every block while the server runs only the blocks above the split."""
    pytest.importorskip("constriction")
    from workbench.device_tuning.compressor import default_compressor
    from workbench.device_tuning.server import ServerCore
    from workbench.errors import AdapterError

    paths, k, n = _server_submodels(tmp_path)
    with pytest.raises(AdapterError, match=f"all.safetensors adapt encoder blocks 0-{n - 1}, but this server runs "
                                           f"only blocks {k}-{n - 1}"):
        ServerCore(str(default_compressor()), [str(paths["all"])])
    with pytest.raises(AdapterError, match=f"top_layers={n - k}"):
        ServerCore(str(default_compressor()), [str(paths["one-too-many"])])
    core = ServerCore(str(default_compressor()), [str(paths["fits"])])
    assert core.info()["speakers"] == ["spk-fits"]


def test_serve_asr_refuses_a_partly_applicable_submodel_before_ray_starts(tmp_path, monkeypatch, capsys) -> None:
    """Issue 24 A13 (review): the start-up check in the driver did not look at the blocks, so the refusal
    came from inside Ray, after its start-up, as Ray's traceback. Now it comes first, in plain words."""
    pytest.importorskip("constriction")
    import socket

    import workbench.device_tuning.server as server
    from workbench.cli import main
    from workbench.device_tuning.compressor import default_compressor
    from workbench.errors import AdapterError

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started before the Submodels were checked")

    monkeypatch.setattr(server, "_start_ray", no_ray)
    monkeypatch.setattr(server, "require", no_ray)
    paths, k, n = _server_submodels(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    for name, match in (("all", f"adapt encoder blocks 0-{n - 1}, but this server runs only blocks {k}-{n - 1}"),
                        ("one-too-many", f"top_layers={n - k}")):
        with pytest.raises(AdapterError, match=match):
            server.serve_asr(default_compressor(), [paths["fits"], paths[name]], port=port, blocking=False)
    assert time.perf_counter() - t0 < 10.0
    rc = main(["serve-asr", "--port", str(port), "--submodels", str(paths["all"])])
    err = capsys.readouterr().err
    assert rc == 2 and "all.safetensors adapt encoder blocks" in err and "Traceback" not in err, err
    with pytest.raises(AssertionError, match="Ray was started"):  # a Submodel that fits passes on to Ray
        server.serve_asr(default_compressor(), [paths["fits"]], port=port, blocking=False)


def test_evaluate_names_a_submodel_given_with_adapter(tmp_path, capsys) -> None:
    from workbench.cli import main

    root, _, worse = _speaker_with_runs(tmp_path)
    assert main(["evaluate", str(root), "--adapter", str(worse), "--decoder", "greedy"]) == 0
    err = capsys.readouterr().err
    assert f"Personal model: {worse.name} (given with --adapter)" in err and "newest run" not in err


# --------------------------------------------------------------------------- the app's pages


def _app(tmp_path: Path):
    pytest.importorskip("panel")
    from workbench.app_pages.common import AppContext
    from workbench.app_pages.shell import WorkbenchApp

    (tmp_path / "data").mkdir()
    app = WorkbenchApp(AppContext(data_dir=tmp_path / "data", backend_factory=lambda name: tiny_backend(),
                                  decoder="greedy"))
    page = app.pages["Speakers"]
    page.new_id.value, page.consent_id.value, page.n_prompts.value = "spk-1", "consent-1", 3
    assert page.create() == "spk-1"
    return app, tmp_path / "data" / "spk-1"


def test_the_speakers_table_says_yes_only_for_a_personal_model_and_which(tmp_path) -> None:
    app, root = _app(tmp_path)
    page = app.pages["Speakers"]
    assert "not yet" in page.table.object
    worse = _save(root, "lora-2.safetensors", WORSE)
    page.refresh()
    assert ">no<" in page.table.object and "no run beat the base model yet" in page.table.object
    good = _save(root, "lora-1.safetensors", GOOD, age=100)
    page.refresh()
    assert ">yes<" in page.table.object and good.name in page.table.object and "14.1 % -&gt; 9.0 %" in page.table.object
    choose_personal_submodel(root, worse)
    page.refresh()
    assert worse.name in page.table.object and "chosen by you" in page.table.object


def test_the_results_page_advises_after_no_improvement_and_lets_the_therapist_choose(tmp_path) -> None:
    app, root = _app(tmp_path)
    stamp = "20261206-101500"
    worse = _save(root, f"lora-{stamp}.safetensors", WORSE,
                  training={"utterances": 12, "minutes": 0.8, "steps": 40, "best_step": 40, "stopped": "time budget"})
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / f"report-spk-1-{stamp}.csv").write_text(
        "utt_id,reference,before,after\nu1,good morning,good evening,bad evening\n")
    results = app.pages["Results"]
    app.go("Results")
    results.load()
    text = results.summary.object
    assert "No improvement" in text and "Record more: this run learned from 12 recordings" in text
    assert "Train longer" in text and "This run is not the personal model in use" in text
    assert "No personal model in use" in results.personal_line.object
    assert set(results.pick.options.values()) == {"", worse.name} and results.pick.value == ""
    # the therapist picks the run; the page and the pick file agree, and a crafted value is refused
    assert not results.use_run("../../speaker.json") and "Choose one of the runs" in results.pick_message.object
    assert results.use_run(worse.name) and chosen_submodel(root) == worse.name
    assert "This run is the personal model in use" in results.summary.object
    assert worse.name in results.personal_line.object and results.pick.value == worse.name
    out = results.try_phrase(torch.zeros(16_000).numpy() + 0.01)
    assert out is not None and out["model"] == worse.name and "chosen by you" in results.try_answer.object
    assert results.use_run("") and chosen_submodel(root) is None
    out = results.try_phrase(torch.zeros(16_000).numpy() + 0.01)
    assert out["personal"] is None and "Only the base model listened" in results.try_answer.object
