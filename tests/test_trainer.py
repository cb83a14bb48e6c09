"""The trainer: events, Stop from another thread, resume, NaN, too little data, determinism."""

from __future__ import annotations

import threading

import pytest
import torch

from workbench.adapters import ConvAdapterConfig, HRAConfig, LoRAConfig, ResidualConfig
from workbench.dataset import Example, speaker_mixed_batches
from workbench.errors import TrainingError
from workbench.trainer import EVENTS, TrainConfig, Trainer

from _models import noise_waves, tiny_backend

pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only")

TEXTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
         "where is my phone", "thank you", "i need help"]


def _examples(n: int, seed: int = 0, speaker: int = 0) -> list[Example]:
    return [Example(w, TEXTS[i % len(TEXTS)], speaker, f"u{seed}-{i}") for i, w in enumerate(noise_waves(n, seed))]


def _config(**kw) -> TrainConfig:
    base = dict(adapter=ResidualConfig(bottleneck=4), max_steps=12, time_limit_s=None, batch_size=4, eval_every=4,
                min_utterances=4, learning_rate=1e-2, patience=0)
    base.update(kw)
    return TrainConfig(**base)


def _params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.params]


def test_events_fire_and_best_is_kept() -> None:
    trainer = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config())
    seen = {e: [] for e in EVENTS}
    for e in EVENTS:
        trainer.on(e, seen[e].append)
    result = trainer.fit()
    assert len(seen["on_step"]) == 12 and len(seen["on_start"]) == 1 and len(seen["on_end"]) == 1
    assert [e["step"] for e in seen["on_eval"]] == [0, 4, 8, 12]
    assert seen["on_stop"][0]["reason"] == "max steps"
    assert {"loss", "lr", "grad_norm", "steps_per_s"} <= set(seen["on_step"][0])
    kept = min(seen["on_eval"], key=lambda e: e["loss"])  # the lowest validation loss is kept
    assert (result.best_step, result.best_wer) == (kept["step"], kept["wer"])
    assert result.wer_before == seen["on_eval"][0]["wer"]
    with pytest.raises(TrainingError, match="unknown event"):
        trainer.on("on_banana", print)


def test_stop_from_another_thread_ends_within_one_step() -> None:
    trainer = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config(max_steps=10_000, eval_every=1000))
    two_steps = threading.Event()
    stopped_at = {}

    def on_step(e: dict) -> None:
        if e["step"] >= 2:
            two_steps.set()

    trainer.on("on_step", on_step)
    thread = threading.Thread(target=lambda: stopped_at.setdefault("result", trainer.fit()))
    thread.start()
    assert two_steps.wait(60)
    step_when_asked = trainer.step
    trainer.stop()
    thread.join(60)
    assert not thread.is_alive()
    result = stopped_at["result"]
    assert result.stopped_reason == "stopped by user"
    assert result.steps <= step_when_asked + 1


def _timed(trainer: Trainer, now: list[float], *, step_s: float, eval_s: float) -> Trainer:
    """Make each step and each evaluation take ``step_s`` / ``eval_s`` seconds on the clock ``now``."""
    train_step, evaluate = trainer._train_step, trainer.evaluate

    def slow(fn, seconds):
        def run():
            now[0] += seconds
            return fn()
        return run

    trainer._train_step, trainer.evaluate = slow(train_step, step_s), slow(evaluate, eval_s)
    return trainer


def test_the_time_budget_is_a_ceiling_with_every_evaluation_and_the_last_check_in_it() -> None:
    """Slow evaluations (20 s) next to 1 s steps: the run ends within its 90 s, and the steps after
    the last periodic check are checked too (issue 24 A4: the app stopped the trainer, which skipped it)."""
    now = [0.0]
    trainer = _timed(Trainer(tiny_backend(), _examples(8), _examples(3, seed=1),
                             _config(max_steps=1000, eval_every=4, time_limit_s=90.0), clock=lambda: now[0]),
                     now, step_s=1.0, eval_s=20.0)
    stops = []
    trainer.on("on_stop", stops.append)
    result = trainer.fit()
    evals = [h for h in result.history if h["kind"] == "eval"]
    assert result.stopped_reason == "time budget" and result.stopped_because == "time limit reached"
    assert result.seconds == now[0] <= 90.0 and result.seconds > 90.0 - 21.0  # no room for one more step + check
    assert evals[-1]["step"] == result.steps and result.steps % 4 != 0  # the last check came after the budget
    assert stops[0]["text"] == "time limit reached" and stops[0]["elapsed_s"] == result.seconds
    assert evals[-1]["elapsed_s"] == result.seconds  # the evaluation's time is counted in elapsed_s


def test_the_step_events_name_the_backends_loss() -> None:
    """The curves' axis names the loss: CTC for CTC models, cross-entropy for Whisper (issue 24 A14)."""
    trainer = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config(max_steps=1))
    assert {h["loss_name"] for h in trainer.fit().history if h["kind"] == "step"} == {"CTC"}
    seq2seq = tiny_backend()
    seq2seq.is_seq2seq = True  # what the trainer reads of a Whisper backend
    assert Trainer(seq2seq, _examples(8), _examples(3, seed=1), _config()).loss_name == "cross-entropy"


def test_stop_still_checks_the_steps_since_the_last_check() -> None:
    trainer = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config(max_steps=100, eval_every=50))
    trainer.on("on_step", lambda e: trainer.stop() if e["step"] == 3 else None)
    result = trainer.fit()
    evals = [h["step"] for h in result.history if h["kind"] == "eval"]
    assert result.stopped_reason == "stopped by user" and evals == [0, 3]
    assert result.best_step in (0, 3)


def test_an_evaluation_longer_than_the_budget_leaves_no_step() -> None:
    now = [0.0]
    trainer = _timed(Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config(time_limit_s=10.0),
                             clock=lambda: now[0]), now, step_s=1.0, eval_s=12.0)
    result = trainer.fit()
    assert (result.stopped_reason, result.steps, result.best_step) == ("time budget", 0, 0)


def test_resume_continues_exactly_from_checkpoint(tmp_path) -> None:
    cfg = _config(checkpoint_every=6)
    straight = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), cfg, checkpoint_dir=tmp_path / "a")
    straight.fit()
    expected = _params(straight)

    first = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), cfg.__class__(**{**cfg.__dict__}),
                    checkpoint_dir=tmp_path / "b")
    first.on("on_step", lambda e: first.stop() if e["step"] == 6 else None)
    first.fit()
    assert first.step == 6
    resumed = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), cfg)
    resumed.load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert resumed.step == 6
    resumed.fit()
    assert resumed.step == 12
    for a, b in zip(_params(resumed), expected, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    other = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config(learning_rate=5e-3))
    with pytest.raises(TrainingError, match="different training settings"):
        other.load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")


def test_same_seed_same_result() -> None:
    runs = []
    for i in range(2):
        backend = tiny_backend()
        torch.rand(17 * (i + 1))  # what ran before in the process must not change the initial weights
        t = Trainer(backend, _examples(8), _examples(3, seed=1), _config(max_steps=6, adapter=LoRAConfig(rank=2)))
        t.fit()
        runs.append(_params(t))
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_nan_loss_is_caught_with_a_clear_message() -> None:
    trainer = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config())
    trainer.adapted.loss = lambda batch, texts: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(TrainingError, match="loss became nan at step 1.*lower learning rate"):
        trainer.fit()


def test_too_little_data_refused_with_how_many_more() -> None:
    with pytest.raises(TrainingError, match="only 3 usable training recordings.*Record 7 more"):
        Trainer(tiny_backend(), _examples(3), _examples(3, seed=1), _config(min_utterances=10))
    with pytest.warns(UserWarning, match="validation set has only"):
        Trainer(tiny_backend(), _examples(8), _examples(1, seed=1), _config())
    with pytest.raises(TrainingError, match="no validation"):
        Trainer(tiny_backend(), _examples(8), [], _config())


@pytest.mark.parametrize("adapter", [ConvAdapterConfig(), LoRAConfig(rank=2), HRAConfig(controller_dim=8),
                                     HRAConfig(controller_dim=8, space="embedding")],
                         ids=["conv", "lora", "hra", "hra-embedding"])
def test_every_family_trains(adapter) -> None:
    trainer = Trainer(tiny_backend(), _examples(6), _examples(2, seed=1), _config(adapter=adapter, max_steps=3))
    trainer.fit()
    assert trainer.step == 3 and trainer.history[-1]["kind"] == "eval"


@pytest.mark.parametrize("mode", ["full", "last_layers"])
def test_baselines_train_base_weights(mode: str) -> None:
    backend = tiny_backend()
    trainer = Trainer(backend, _examples(6), _examples(2, seed=1), _config(mode=mode, max_steps=2))
    assert trainer.adapted is None
    n_base = sum(p.numel() for p in backend.module.parameters())
    n_train = sum(p.numel() for p in trainer.params)
    assert (n_train == n_base) == (mode == "full") and n_train > 0
    trainer.fit()


def test_multi_speaker_training_mixes_speakers_in_every_batch() -> None:
    g = torch.Generator().manual_seed(0)
    speakers = [s for s in range(4) for _ in range(6)]
    batches = speaker_mixed_batches(speakers, 4, generator=g)
    assert sorted(i for b in batches for i in b) == list(range(24))
    assert all(len({speakers[i] for i in b}) == 4 for b in batches)
    train = [e for s in range(3) for e in _examples(4, seed=s, speaker=s)]
    held = [e for s in range(3) for e in _examples(1, seed=10 + s, speaker=s)]
    trainer = Trainer(tiny_backend(), train, held, _config(max_steps=3, min_utterances=4))
    assert trainer.adapted.num_speakers == 3
    trainer.fit()


def test_speed_perturbation_adds_a_copy_per_factor_and_round_trips() -> None:
    train = _examples(8)
    config = _config(speed_perturb=(0.9, 1.1), max_steps=4)
    trainer = Trainer(tiny_backend(), train, _examples(3, seed=1), config)
    assert len(trainer.train_cache) == 3 * len(train)
    slow, fast = trainer.train_cache.examples[8], trainer.train_cache.examples[16]
    assert (slow.text, slow.utt_id) == (train[0].text, train[0].utt_id)
    assert abs(len(slow.wav) - len(train[0].wav) / 0.9) <= 2 and abs(len(fast.wav) - len(train[0].wav) / 1.1) <= 2
    trainer.fit()
    assert TrainConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    for bad in ((1.0,), (0.2,), (3.0,)):
        with pytest.raises(TrainingError, match="speed_perturb"):
            _config(speed_perturb=bad)


def test_early_stopping_watches_the_wer_and_the_lowest_loss_is_kept() -> None:
    trainer = Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config(max_steps=40, patience=2))
    scripted = iter([(0.5, 1.0), (0.4, 0.9), (0.4, 0.7), (0.45, 0.8), (0.3, 0.1)])  # (WER, loss) per evaluation
    weights: dict[int, list[torch.Tensor]] = {}

    def evaluate() -> dict[str, float]:
        weights[trainer.step] = _params(trainer)
        wer, loss = next(scripted)
        return {"wer": wer, "cer": wer, "loss": loss}

    trainer.evaluate = evaluate
    result = trainer.fit()
    # WER 0.4 at step 4, then no lower WER for 2 evaluations (steps 8, 12): stop at step 12,
    # before the scripted 5th evaluation could be reached
    assert (result.stopped_reason, result.steps) == ("early stop", 12)
    assert (result.best_step, result.best_wer) == (8, 0.4)  # lowest loss (0.7), not the first 0.4 WER
    for kept, p in zip(weights[8], trainer.params, strict=True):
        torch.testing.assert_close(p.detach(), kept, atol=0, rtol=0)


def _bank_trainer(**kw) -> Trainer:
    train = _examples(8, speaker=0) + _examples(8, seed=2, speaker=1)
    valid = _examples(3, seed=1, speaker=0) + _examples(3, seed=3, speaker=1)
    return Trainer(tiny_backend(), train, valid, _config(**{"per_speaker_selection": True, **kw}))


def test_a_bank_keeps_each_speakers_rows_at_its_own_best_step() -> None:
    trainer = _bank_trainer(max_steps=100, patience=2)
    assert trainer.per_speaker
    # (WER, loss) per evaluation at steps 0, 4, 8, ...: speaker 0 is best at step 4 and stops
    # improving; speaker 1 improves until step 12
    script = {0: [(0.5, 1.0), (0.3, 0.5), (0.4, 0.6), (0.4, 0.7), (0.4, 0.8), (0.4, 0.9)],
              1: [(0.8, 2.0), (0.8, 1.9), (0.6, 1.5), (0.5, 1.2), (0.55, 1.3), (0.6, 1.4)]}
    weights: dict[int, list[torch.Tensor]] = {}
    best_events = []
    trainer.on("on_best", best_events.append)

    def evaluate() -> dict:
        k = trainer.step // 4
        weights[trainer.step] = _params(trainer)
        per = {s: {"wer": w, "loss": l, "errors": round(10 * w), "words": 10, "n": 3}
               for s, (w, l) in ((s, script[s][k]) for s in (0, 1))}
        return {"wer": sum(p["wer"] for p in per.values()) / 2, "cer": 0.0,
                "loss": sum(p["loss"] for p in per.values()) / 2, "speakers": per}

    trainer.evaluate = evaluate
    result = trainer.fit()
    # speaker 0 has had no lower WER since step 4 by step 12, speaker 1 since step 12 by step 20
    assert (result.stopped_reason, result.steps) == ("early stop", 20)
    assert result.speaker_steps == [4, 12] and result.best_step == 12
    assert result.best_wer == pytest.approx((3 + 5) / 20)  # each speaker's WER at its own kept step
    for p, at4, at12 in zip(trainer.params, weights[4], weights[12], strict=True):
        torch.testing.assert_close(p.detach()[0], at4[0], atol=0, rtol=0)
        torch.testing.assert_close(p.detach()[1], at12[1], atol=0, rtol=0)
    assert [e["speakers"] for e in best_events] == [[0, 1], [0, 1], [1], [1]]


def test_per_speaker_selection_only_where_every_weight_has_a_row() -> None:
    assert not _bank_trainer(per_speaker_selection=False).per_speaker
    assert not TrainConfig().per_speaker_selection  # opt-in (docs/results.md: no difference beyond seed noise)
    assert not _bank_trainer(adapter=HRAConfig()).per_speaker  # the controller is shared
    assert not Trainer(tiny_backend(), _examples(8), _examples(3, seed=1), _config()).per_speaker
    with pytest.warns(UserWarning, match=r"bank rows \[1\] have no validation recordings"):
        lonely = Trainer(tiny_backend(), _examples(8) + _examples(8, seed=2, speaker=1), _examples(3, seed=1),
                         _config(per_speaker_selection=True))
    assert not lonely.per_speaker


def test_a_bank_run_resumes_with_each_speakers_choice(tmp_path) -> None:
    full = _bank_trainer(max_steps=12, eval_every=2)
    full.fit()
    first = _bank_trainer(max_steps=12, eval_every=2)
    first.on("on_step", lambda e: first.stop() if e["step"] == 6 else None)
    first.fit()
    first.save_checkpoint(tmp_path / "c.safetensors")
    resumed = _bank_trainer(max_steps=12, eval_every=2)
    resumed.load_checkpoint(tmp_path / "c.safetensors")
    result = resumed.fit()
    assert result.speaker_steps == [st["best_step"] for st in full.speaker_state]
    for a, b in zip(resumed.params, full.params, strict=True):
        torch.testing.assert_close(a.detach(), b.detach())


def test_per_speaker_scores_add_up_to_the_whole() -> None:
    trainer = _bank_trainer()
    scores = trainer.evaluate()
    per = scores["speakers"]
    assert sorted(per) == [0, 1] and all(p["n"] == 3 for p in per.values())
    assert scores["wer"] == pytest.approx(sum(p["errors"] for p in per.values()) / sum(p["words"] for p in per.values()))
    assert scores["loss"] == pytest.approx(sum(p["loss"] * p["n"] for p in per.values()) / 6, rel=1e-5)
