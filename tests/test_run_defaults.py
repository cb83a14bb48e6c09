"""One set of run defaults (workbench.defaults.RUN_DEFAULTS), read by the workflow, the corpus split,
the command line, the app and the notebooks (issue 31, "Run defaults disagree")."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from workbench.defaults import RUN_DEFAULTS, RunDefaults
from workbench.trainer import TrainConfig

from _models import tiny_backend

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["turn on the light", "call my sister", "i am hungry", "good morning", "open the door",
           "where is my phone", "thank you very much", "i need some help", "close the window",
           "what time is it", "please pass the salt", "see you tomorrow"]
# parameters that are run defaults wherever a run is started, and the field each one reads
RUN_PARAMETERS = {"model": "model", "decoder": "decoder", "test_fraction": "test_fraction",
                  "valid_fraction": "valid_fraction", "seed": "seed"}


def _defaults(fn) -> dict[str, object]:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def test_the_run_defaults_are_frozen_and_say_what_won() -> None:
    assert (RUN_DEFAULTS.model, RUN_DEFAULTS.decoder, RUN_DEFAULTS.test_fraction, RUN_DEFAULTS.valid_fraction,
            RUN_DEFAULTS.seed) == ("auto", "lexicon", 0.25, 0.15, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RUN_DEFAULTS.decoder = "greedy"  # type: ignore[misc]
    assert RunDefaults() == RUN_DEFAULTS


def test_every_workflow_entry_point_defaults_to_the_run_defaults() -> None:
    from workbench.app_pages.jobs import TrainingJob
    from workbench.corpus import SpeakerCorpus
    from workbench.workflow import evaluate_speaker, personalize_speaker, prepare, three_way_split, train_bank

    for fn in (prepare, personalize_speaker, train_bank, evaluate_speaker, three_way_split, SpeakerCorpus.split,
               TrainingJob.__init__):
        for name, value in _defaults(fn).items():
            if name in RUN_PARAMETERS:
                assert value == getattr(RUN_DEFAULTS, RUN_PARAMETERS[name]), (fn.__qualname__, name, value)
    config = TrainConfig()
    assert (config.seed, config.time_limit_s, config.max_steps, config.min_utterances) == (
        RUN_DEFAULTS.seed, RUN_DEFAULTS.time_limit_s, RUN_DEFAULTS.max_steps, RUN_DEFAULTS.min_utterances)


def test_no_signature_restates_a_run_default_as_a_literal() -> None:
    """Issue 31: prepare said model="tiny", decoder="greedy" where the CLI said "auto", "lexicon", and the
    split said 0.2 where everything else said 0.25. A literal default for these names is refused."""
    files = [*sorted((ROOT / "workbench" / "workflow").glob("*.py")), *sorted((ROOT / "workbench" / "corpus").glob("*.py")),
             *sorted((ROOT / "workbench" / "app_pages").glob("*.py")), ROOT / "workbench" / "app.py",
             ROOT / "workbench" / "trainer.py"]
    restated = []
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = [*node.args.args, *node.args.kwonlyargs]
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + list(node.args.defaults)
                defaults += node.args.kw_defaults
                pairs = zip((a.arg for a in args), defaults, strict=True)
            elif isinstance(node, ast.ClassDef):  # dataclass fields
                pairs = ((s.target.id, s.value) for s in node.body
                         if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name))
            else:
                continue
            restated += [f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} {name}={d.value!r}"
                         for name, d in pairs if name in RUN_PARAMETERS and isinstance(d, ast.Constant)
                         and d.value is not None]
    assert not restated, restated


def test_the_command_line_reads_the_run_defaults() -> None:
    from workbench.cli import build_parser

    parser = build_parser()
    for argv in (["personalize", "spk"], ["train-bank", "s1", "--out", "b.safetensors"]):
        args = parser.parse_args(argv)
        assert (args.model, args.decoder, args.seed, args.minutes) == (
            RUN_DEFAULTS.model, RUN_DEFAULTS.decoder, RUN_DEFAULTS.seed, RUN_DEFAULTS.max_minutes), argv
    for name in ("evaluate", "report"):
        args = parser.parse_args([name, "spk"])
        assert (args.model, args.decoder) == (RUN_DEFAULTS.model, RUN_DEFAULTS.decoder)
    args = parser.parse_args(["transcribe", "a.wav"])  # free speech: no prompt-domain lexicon
    assert (args.model, args.decoder) == (RUN_DEFAULTS.model, RUN_DEFAULTS.transcribe_decoder) == ("auto", "greedy")


def test_the_step_limit_follows_what_a_step_of_the_base_model_costs() -> None:
    from workbench.adapters import LoRAConfig
    from workbench.workflow import default_config

    ctc, seq2seq = tiny_backend(), tiny_backend()
    seq2seq.is_seq2seq = True  # what default_config reads of a Whisper backend
    assert default_config(ctc).max_steps == RUN_DEFAULTS.max_steps == 400  # the built-in model: unchanged
    assert default_config(seq2seq).max_steps == RUN_DEFAULTS.max_steps_seq2seq == 120  # ~3 minutes at 1.1 s a step
    assert default_config(seq2seq, adapter=LoRAConfig()).max_steps == 120  # another adapter, the same model's pace
    assert default_config(seq2seq, max_steps=7).max_steps == 7
    assert default_config(None).max_steps == RUN_DEFAULTS.max_steps
    assert default_config(ctc).time_limit_s == RUN_DEFAULTS.time_limit_s


def test_the_corpus_split_and_the_three_way_split_keep_the_same_test_phrases(tmp_path) -> None:
    """SpeakerCorpus.split said 0.2 where three_way_split, the app and the CLI said 0.25: evaluating
    the base model later measured other test phrases than the run did."""
    from workbench.corpus import SpeakerCorpus
    from workbench.workflow import three_way_split

    from _models import noise_waves

    corpus = SpeakerCorpus.create(tmp_path / "data", "spk-defaults", prompts=PROMPTS, simulated=True)
    for i, w in enumerate(noise_waves(len(PROMPTS) * 2, seed=2, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=PROMPTS[i % len(PROMPTS)])
    test = three_way_split(corpus)[2]
    assert [u.utt_id for u in corpus.split()[1]] == [u.utt_id for u in test]
    assert len({u.prompt for u in test}) == round(RUN_DEFAULTS.test_fraction * len(PROMPTS)) == 3  # not 0.2's 2


def test_the_app_reads_the_run_defaults() -> None:
    pytest.importorskip("panel")
    from workbench.app_pages.common import AppContext, ModelDefaults, default_train_config
    from workbench.app_pages.personalize import sentences_needed
    from workbench.workflow import default_config, three_way_split

    ctx = AppContext(data_dir=ROOT)
    assert (ctx.decoder, ctx.test_fraction) == (RUN_DEFAULTS.decoder, RUN_DEFAULTS.test_fraction)
    assert next(iter(ctx.models.values())) == RUN_DEFAULTS.model
    backend = tiny_backend()
    assert default_train_config()(backend) == default_config(backend)  # the slider's value: the same run as the CLI's
    assert ModelDefaults(60.0)(backend).time_limit_s == 60.0
    assert _defaults(sentences_needed)["valid_fraction"] == _defaults(three_way_split)["valid_fraction"]
    source = (ROOT / "workbench" / "app_pages" / "personalize.py").read_text()
    assert "inspect.signature" not in source  # a default is read from RUN_DEFAULTS, not from a signature


def test_the_notebooks_use_the_run_defaults() -> None:
    """Notebook 03 had to pass decoder="lexicon" to match the app, and a 90 s budget to match nobody."""
    for name in ("03_personalize_live.ipynb", "03b_live_captions.ipynb"):
        cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        calls = [line for line in code.splitlines() if "prepare(" in line]
        assert calls, name
        for line in calls:
            assert "decoder=" not in line and "else 90" not in line, (name, line)
