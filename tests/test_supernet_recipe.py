"""recipes/train_supernet.py: step budgets, the ablation switches, and a stopped run resuming exactly (issue 29)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
sys.path.insert(0, str(RECIPES))

import train_supernet as ts  # noqa: E402

from workbench.models.supernet.model import SearchSpace, SubnetChoice, Supernet  # noqa: E402
from workbench.models.tiny import TinyConfig, TinyConformerCTC  # noqa: E402

SMALL = SubnetChoice(2, 16, 1, 8)
LARGE = SubnetChoice(3, 48, 3, 24)
SPACE = SearchSpace(depths=(2, 3), ffns=(16, 32, 48), heads=(1, 2, 3), convs=(8, 16, 24),
                    sizes=(("small", SMALL), ("large", LARGE)))


def _tiny_model(args):
    torch.manual_seed(args.seed)
    cfg = TinyConfig(d_model=24, num_layers=3, num_heads=3, ff_mult=2, conv_kernel=5, subsample_channels=4,
                     dropout=0.1)
    return Supernet(TinyConformerCTC(cfg), SPACE, adaptive_dropout=args.adaptive_dropout), ["small", "large"]


def _data():
    rng = np.random.default_rng(0)
    words = ["a cat", "the dog", "no", "yes please", "hello there", "good day"]
    train = [(rng.standard_normal((60 + 7 * i, 80)).astype(np.float32), words[i % len(words)]) for i in range(10)]
    dev = [((0.05 * rng.standard_normal(8000)).astype(np.float32), w) for w in words[:2]]
    return {"train": train, "dev": dev}


def _args(tmp_path, *extra):
    return ts.parse_args(["--steps", "4", "--ckpt-every", "1", "--eval-every", "100", "--max-frames", "300",
                          "--warmup", "2", "--log-every", "1", "--no-bf16", "--out", str(tmp_path), *extra])


@pytest.fixture
def tiny_recipe(monkeypatch):
    monkeypatch.setattr(ts, "build_model", _tiny_model)
    flag = {"now": False}
    monkeypatch.setattr(ts, "_stop_signals", lambda: flag)
    return flag


def test_a_stopped_run_resumes_exactly(tmp_path, tiny_recipe, monkeypatch):
    data = _data()
    straight = tmp_path / "straight"
    ts.train(_args(straight), data, straight)
    # the same run, stopped (as by Ctrl-C) after its second step, then resumed
    stopped = tmp_path / "stopped"
    real_step, calls = ts.sandwich_step, []

    def step_then_stop(*a, **k):
        out = real_step(*a, **k)
        calls.append(1)
        if len(calls) == 2:
            tiny_recipe["now"] = True
        return out

    monkeypatch.setattr(ts, "sandwich_step", step_then_stop)
    with pytest.raises(SystemExit, match="stopped at step 2.*--resume"):
        ts.train(_args(stopped), data, stopped)
    assert torch.load(stopped / "ckpt.pt", weights_only=False)["state"]["step"] == 2
    tiny_recipe["now"] = False
    monkeypatch.setattr(ts, "sandwich_step", real_step)
    torch.manual_seed(123)  # whatever ran in between: the checkpoint restores the generators
    ts.train(_args(stopped, "--resume"), data, stopped)
    a = torch.load(straight / "ckpt.pt", weights_only=False)
    b = torch.load(stopped / "ckpt.pt", weights_only=False)
    assert a["state"]["step"] == b["state"]["step"] == 4
    for k, v in a["net"].items():
        assert torch.equal(v, b["net"][k]), k
    assert a["state"]["dev"][-1][2] == b["state"]["dev"][-1][2]


def test_a_resume_with_other_switches_is_refused(tmp_path, tiny_recipe):
    data = _data()
    ts.train(_args(tmp_path, "--steps", "1"), data, tmp_path / "run")
    with pytest.raises(SystemExit, match="belongs to run 'supernet'"):
        ts.train(_args(tmp_path, "--ablation", "kl", "--resume"), data, tmp_path / "run")


@pytest.mark.parametrize("ablation, switch", [
    ("no_adaptive_dropout", ("adaptive_dropout", False)), ("kl", ("distill", "kl")),
    ("adamw", ("optimizer", "adam")), ("no_distill", ("distill", "none")),
])
def test_each_ablation_turns_one_switch_and_trains(tmp_path, tiny_recipe, ablation, switch):
    args = _args(tmp_path, "--ablation", ablation, "--steps", "2")
    key, value = switch
    assert getattr(args, key) == value
    base = _args(tmp_path)
    changed = [k for k in ("adaptive_dropout", "distill", "optimizer") if getattr(args, k) != getattr(base, k)]
    assert changed == [key]
    net, names, state = ts.train(args, _data(), tmp_path / ts.run_name(args))
    assert state["step"] == 2 and names == ["small", "large"]
    opt = torch.load(tmp_path / ts.run_name(args) / "ckpt.pt", weights_only=False)["opt"]
    assert ("weight_decay" in opt["param_groups"][0]) == (ablation == "adamw")


def test_an_ablation_and_a_contradicting_flag_are_refused():
    for argv in (["--ablation", "kl", "--distill", "none"], ["--ablation", "no_distill", "--distill", "kl"]):
        with pytest.raises(SystemExit):
            ts.parse_args(argv)


def test_quick_and_budgets():
    args = ts.parse_args(["--quick"])
    assert args.steps == 3 and args.n_train == 24 and args.out.name == "supernet-quick"
    assert args.cache.name == "pretrain-quick" and not args.beam
    assert ts.parse_args([]).minutes == 10.0 and ts.parse_args(["--steps", "5"]).minutes is None
    args = ts.parse_args(["--steps", "100", "--warmup", "10"])
    assert ts.lr_at(args, 50, elapsed=1e9) > ts.lr_at(args, 99, elapsed=0.0)  # the schedule follows the steps
    with pytest.raises(SystemExit):
        ts.parse_args(["--mode", "single", "--ablation", "kl"])
