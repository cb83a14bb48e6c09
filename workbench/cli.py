"""The ``workbench`` command line.

Each subcommand is a thin wrapper: it parses arguments, calls the core, and
turns a :class:`~workbench.errors.WorkbenchError` into a plain message and exit
code 2 (never a traceback). Subcommands import their module lazily so that
``workbench --help`` is fast and works with only the core installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import NotYetSupportedError, UsageError, WorkbenchError

__all__ = ["build_parser", "main"]

def _cmd_demo(args: argparse.Namespace) -> int:
    from workbench.demo import run_demo

    return run_demo(data_dir=args.data, out_dir=args.out, quick=args.quick, speaker=args.speaker)


def _adapter_config(name: str):
    from workbench.adapters import REGISTRY
    from workbench.errors import AdapterError

    if name not in REGISTRY:
        raise AdapterError(f"unknown adapter family {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name][0]()


def _adapter_choice(name: str | None) -> dict:
    """``TrainConfig`` keyword for ``--family NAME`` (given to the constructor, so that the learning
    rate follows the family's default)."""
    return {"adapter": _adapter_config(name)} if name else {}


def _family(args: argparse.Namespace) -> str | None:
    """The adapter family ``personalize`` / ``train-bank`` train: ``--family``, or ``--adapter``, its former
    name there, which works for one more release with a note (everywhere else ``--adapter`` is a Submodel file).

    Raises:
        UsageError: both are given.
    """
    if args.family_alias is None:
        return args.family
    if args.family is not None:
        raise UsageError(f"--adapter is the former name of --family here; give the adapter family once, as "
                         f"--family {args.family} (leave out --adapter {args.family_alias})")
    from workbench.notices import notify

    notify(f"use --family {args.family_alias}: for {args.command}, --adapter still names the adapter family, for "
           "this release only (everywhere else --adapter is a Submodel file, and it will be here too)")
    return args.family_alias


def _cmd_record(args: argparse.Namespace) -> int:
    from workbench.prompts import load_prompts
    from workbench.ui.kernel_recorder import KernelRecorder
    from workbench.ui.terminal import record_in_terminal

    prompts = load_prompts(args.prompts) if args.create else None
    mic = KernelRecorder(args.device)  # PortAudio and the microphone first: nothing is written if they fail
    kept = record_in_terminal(args.speaker_dir, consent_id=args.consent, create=args.create,
                              prompts=prompts, device=args.device, recorder=mic)
    return 0 if kept >= 0 else 1


def _cmd_import(args: argparse.Namespace) -> int:
    import warnings
    from pathlib import Path

    from workbench.corpus import import_folder

    target = Path(args.speaker_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below says the same, once
        corpus = import_folder(args.folder, args.transcripts, target.parent, target.name, exist_ok=True)
    report = corpus.last_import
    print(report.message)
    for line in report.unreadable:
        print(f"  {line}", file=sys.stderr)
    print(f"Speaker folder: {corpus.root}")
    return 1 if report.unmatched_audio or report.missing_audio or report.unreadable else 0


_HOPELESS = ("silent", "empty")  # nothing in such a file can be a word: whatever the model says is dropped


def _load_for_transcribe(files: Sequence[str]) -> tuple[list, dict[str, tuple[bool, list[str]]]]:
    """Each file as ``(n,)`` float32 at 16 kHz, and by file ``(silent, what is wrong in words)``.

    Damaged samples (NaN) are refused naming the file. A silent file's transcript is
    left empty; a short, quiet or cut-off one gets a note, so that an empty or poor
    transcript is explained.
    """
    import warnings

    from workbench.audio import check_quality, load_audio
    from workbench.errors import AudioError

    wavs, notes = [], {}
    for f in files:
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            wav = load_audio(f)
        report = check_quality(wav)
        bad = [p for p in report.problems if p.code == "nonfinite"]
        if bad:
            raise AudioError(f"{f}: {bad[0].message}")
        hopeless = [p.message for p in report.problems if p.code in _HOPELESS]
        notes[f] = (bool(hopeless), hopeless + [str(w.message) for w in heard] + [
            p.message for p in report.problems if p.code in ("too_short", "too_quiet")])
        wavs.append(wav)
    return wavs, notes


def _report_transcripts(files: Sequence[str], texts: Sequence[str], notes: dict[str, tuple[bool, list[str]]]) -> int:
    """Print ``file<TAB>text`` lines, and to stderr why a transcript is empty or doubtful; 1 if any is empty."""
    empty = 0
    for f, t in zip(files, texts, strict=True):
        hopeless, said = notes.get(f, (False, []))
        why = " ".join(said)
        if hopeless:  # whatever the model made of silence is not a transcript
            t = ""
        print(f"{f}\t{t}")
        if not t.strip():
            empty += 1
            print(f"workbench transcribe: nothing was recognised in {f}." + (f" {why}" if why else
                  " It may hold no speech, or speech the model cannot make out."), file=sys.stderr)
        elif why:
            print(f"workbench transcribe: {f}: {why} The transcript may be incomplete.", file=sys.stderr)
    return 1 if empty else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from workbench.app import serve_cli

    return serve_cli(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__main__.py").is_file():
        raise NotYetSupportedError("the benchmarks live in the source checkout (bench/); clone the repository "
                                   "and install it with pip install -e . to run them")
    cmd = [sys.executable, "-m", "bench", *(["--quick"] if args.quick else []), "--device", args.device]
    for name in args.only or []:
        cmd += ["--only", name]
    return subprocess.call(cmd, cwd=root)


def _speaker_model(speaker_dir: str | None, requested: str, adapter: str | None = None, *,
                   personal: bool = True, size: str | None = None):
    """``(backend, adapter)``: the base model and the Submodel file in use (or None), each said on stderr.

    With ``speaker_dir``, no ``adapter`` and ``personal``, the Submodel is the speaker's
    personal model (:func:`workbench.workflow.personal_submodel`: the run the user chose, else
    the newest run that beat the base model). ``--model auto`` loads the base model that
    Submodel was trained on (never downloaded: a name read from a file is not the user's),
    else one by the speaker's kind (simulated or real)."""
    from pathlib import Path

    from workbench.models.choice import choose_base_model
    from workbench.models.loading import load_base_model

    info, adapter_base, given = None, None, adapter is not None
    if speaker_dir is not None:
        from workbench.corpus import SpeakerCorpus

        corpus = SpeakerCorpus.open(speaker_dir)
        info = corpus.info
        if adapter is None and personal:
            from workbench.workflow import personal_submodel

            chosen = personal_submodel(corpus.root)
            adapter = str(chosen.path) if chosen else None
            print(chosen.describe() if chosen else
                  f"Personal model: none ({corpus.speaker_id} has no run that beat the base model on its test "
                  "phrases, and none was chosen); the base model alone is used. --adapter FILE names a run.",
                  file=sys.stderr)
    if given:
        print(f"Personal model: {Path(adapter).name} (given with --adapter)", file=sys.stderr)
    if size is not None:  # --size: a size of the built-in model (auto: the largest in real time here), and why
        from workbench.models.sizes import sized_model

        name, reason = sized_model(size, requested)
        print(reason[0].upper() + reason[1:], file=sys.stderr)
        return load_base_model(name), adapter
    if requested == "auto" and adapter is not None and Path(adapter).is_file():
        from workbench.adapters.io import read_submodel

        adapter_base = read_submodel(adapter)[1].get("base_model")
    choice = choose_base_model(info, requested, adapter_base=adapter_base)
    print(choice.reason[0].upper() + choice.reason[1:], file=sys.stderr)
    return load_base_model(choice.name, offline=requested == "auto"), adapter


def _cmd_personalize(args: argparse.Namespace) -> int:
    from workbench.plots import report_figures
    from workbench.workflow import default_config, personalize_speaker

    words = _vocabulary(args, args.speaker_dir)  # a bad list is refused before a model loads
    backend, _ = _speaker_model(args.speaker_dir, args.model, personal=False, size=args.size)
    config = default_config(backend, max_seconds=60.0 * args.minutes, seed=args.seed, **_adapter_choice(_family(args)))
    run = personalize_speaker(args.speaker_dir, backend=backend, config=config,
                              decoder=args.decoder, seed=args.seed, figures=report_figures, window=args.window,
                              vocabulary=words)
    print(run.comparison.summary())
    if run.train_result.cut_short:  # the time ceiling ended the run before it converged
        print(f"Note: {run.train_result.cut_short} (a longer --minutes, or a quieter computer).")
    if run.advice:  # no improvement: what to do next (the run is not used as the personal model)
        print(run.advice)
    print(f"Personal adapter: {run.submodel_path}")
    if args.size and run.submodel_path:  # trained on the supernet's largest size: it serves every size
        from workbench.models.supernet_adapters import mark_supernet_adapter

        if mark_supernet_adapter(run.submodel_path, backend):
            print("It serves every size of the built-in model (small, medium, large): it was trained on the largest.")
    print(f"Report: {run.report_html}")
    return 0


def _cmd_train_bank(args: argparse.Namespace) -> int:
    from workbench import distributed
    from workbench.workflow import default_config, train_bank

    device = distributed.init_from_env(args.device)  # joins the torchrun job, if this is one
    finished = False
    try:
        family = _family(args)
        adapter = _adapter_choice(family)
        if args.speaker_space is not None:
            from workbench.adapters import HRAConfig

            if args.speaker_space < 1:
                raise UsageError(f"--speaker-space must be at least 1 number per speaker, got "
                                 f"{args.speaker_space} (16 is a good start)")
            if family not in (None, "hra"):
                raise UsageError("--speaker-space learns HRA heads from a vector per speaker; leave out "
                                 f"--family {family} or use --family hra")
            adapter = {"adapter": HRAConfig(space="embedding", embed_dim=args.speaker_space)}
        from workbench.models.loading import load_base_model

        from workbench.workflow import speaker_folders
        from workbench.workflow.bank import bank_base_model

        choice = bank_base_model(speaker_folders(args.speakers), args.model)  # auto: the speakers' kind decides
        if args.model == "auto" and distributed.is_main():
            print(choice.reason[0].upper() + choice.reason[1:], file=sys.stderr)
        backend = load_base_model(choice.name, device=device, offline=args.model == "auto")
        config = default_config(backend, max_seconds=60.0 * args.minutes, seed=args.seed,
                                per_speaker_selection=args.per_speaker_selection,
                                **({"max_steps": args.steps} if args.steps else {}), **adapter)
        run = train_bank(args.speakers, args.out, backend=backend, device=device, config=config,
                         decoder=args.decoder, seed=args.seed)
        if run.path is not None:  # rank 0 (or the only process) reports
            _, world = distributed.rank_and_size()
            r = run.train_result
            print(run.table())
            n = len(run.speaker_ids)
            print(f"{n} speaker{'s' if n > 1 else ''} in one bank: {r.steps} steps in {r.seconds:.0f} s "
                  f"({r.stopped_because}), {world} process{'es' if world > 1 else ''}")
            if r.cut_short:  # the time ceiling ended the run before it converged
                print(f"Note: {r.cut_short} (a longer --minutes, or a quieter computer).")
            print(f"Bank: {run.path}")
        finished = True
    finally:
        distributed.shutdown(wait=finished)  # after an error, do not wait for the others: end the job
    return 0


def _cmd_transcribe_remote(args: argparse.Namespace) -> int:
    """``transcribe --server URL``: the device part runs here; only the compressed representation is sent."""
    from workbench.device_tuning.client import DeviceClient
    from workbench.device_tuning.compressor import default_compressor

    from workbench.constants import SAMPLE_RATE
    from workbench.device_tuning.client import summary_line

    dec = RUN_DEFAULTS.transcribe_decoder
    if args.decoder != dec or args.adapter:
        ignored = [f for f, on in (("--decoder", args.decoder != dec), ("--adapter", bool(args.adapter))) if on]
        print(f"Note: {' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored with --server: the "
              "server decodes with the Submodel it holds for --speaker", file=sys.stderr)
    model = "tiny" if args.model == "auto" else args.model  # the device part: the server's base model
    client = DeviceClient(args.server, args.compressor or default_compressor(model), model=model, token=args.token)
    wavs, notes = _load_for_transcribe(args.files)
    texts, sent, seconds, base_only = [], 0, 0.0, 0
    for wav in wavs:
        answer = client.transcribe(wav, speaker=args.speaker or "")
        texts.append(answer["text"])
        sent += answer["bytes_sent"]
        seconds += len(wav) / SAMPLE_RATE
        base_only += answer.get("submodel") is False
    print(f"{summary_line(sent, seconds)} to {args.server} (no audio left this computer)", file=sys.stderr)
    if args.speaker and wavs and not base_only:
        print(f"Personal model: the server's Submodel for {args.speaker!r}", file=sys.stderr)
    if args.speaker and base_only:
        print(f"Note: the server holds no Submodel for speaker {args.speaker!r}, so the base model alone "
              f"transcribed {base_only} of {len(wavs)} file(s). Check the spelling of --speaker (the server's "
              "speakers are listed by GET on its address), or start it with that speaker's Submodel.",
              file=sys.stderr)
    return _report_transcripts(args.files, texts, notes)


def _cmd_serve_asr(args: argparse.Namespace) -> int:
    from workbench.device_tuning.compressor import default_compressor
    from workbench.device_tuning.server import serve_asr

    serve_asr(args.compressor or default_compressor(args.model), args.submodels, host=args.host, port=args.port,
              token=args.token, model=args.model)
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from workbench.models.supernet_adapters import load_adapter
    from workbench.workflow import bank_row, build_decoder

    if args.server:
        return _cmd_transcribe_remote(args)
    words = _vocabulary(args, None)  # a bad list is refused before a model loads
    backend, _ = _speaker_model(None, args.model, args.adapter, size=args.size)
    if args.adapter is None:
        print("Personal model: none (no --adapter given); the base model alone is used", file=sys.stderr)
    wavs, notes = _load_for_transcribe(args.files)
    decoder = build_decoder(args.decoder, backend=backend, vocabulary=words)
    if args.adapter:
        adapted, meta = load_adapter(backend, args.adapter)  # a supernet adapter is cut for the size in use
        if meta.get("sliced_for"):
            print(f"The personal adapter was trained on the {meta['supernet']['made_for']} size; it is cut for the "
                  f"{meta['sliced_for']} size in use.", file=sys.stderr)
        held = meta.get("speaker_ids", [])
        if args.speaker and len(held) == 1 and args.speaker != held[0]:
            raise UsageError(f"this Submodel file is {held[0]!r}'s, not {args.speaker!r}'s; leave out --speaker "
                             "or choose that speaker's file")
        rows = [bank_row(meta, args.speaker)] * len(wavs) if adapted.num_speakers > 1 else None
        texts = adapted.transcribe(wavs, decoder=decoder, speakers=rows)
    else:
        texts = backend.transcribe(wavs, decoder=decoder)
    return _report_transcripts(args.files, texts, notes)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from workbench.plots import report_figures
    from workbench.workflow import evaluate_speaker

    words = _vocabulary(args, args.speaker_dir)  # a bad list is refused before a model loads
    backend, adapter = _speaker_model(args.speaker_dir, args.model, args.adapter)
    result = evaluate_speaker(args.speaker_dir, backend=backend, adapter=adapter,
                              decoder=args.decoder, write_report=args.report,
                              figures=report_figures, vocabulary=words)
    print(result.summary() if hasattr(result, "summary") else result)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    args.report = True
    return _cmd_evaluate(args)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from workbench.simulate import simulate_cli

    return simulate_cli(args)


def _cmd_listen(args: argparse.Namespace) -> int:
    from workbench.live.listen import listen

    options = {}
    if args.size:  # a size of the built-in model (auto: the largest in real time here), and why
        from workbench.models.sizes import sized_model

        args.model, reason = sized_model(args.size, args.model)
        print(reason[0].upper() + reason[1:], file=sys.stderr)
    words = _vocabulary(args, args.speaker)
    if words:  # the word list biases the search of the backend the recognizer is given
        backend, _ = _speaker_model(args.speaker, args.model)
        if backend.is_seq2seq:
            backend.logit_bias = backend.vocabulary_bias(words)
        else:
            print(f"Note: live captions with {backend.name} do not use the word list yet (Whisper's do); "
                  "transcribe and evaluate use it.", file=sys.stderr)
        options["backend"] = backend
    return listen(args.speaker, args.model, file=args.file, fast=args.fast, as_json=args.json, device=args.device,
                  **options)


def _vocabulary(args: argparse.Namespace, speaker_dir: str | None) -> list[str]:
    """The word list a command decodes with: ``--vocabulary FILE``, else the speaker's saved list
    (:func:`workbench.vocabulary.resolve_vocabulary`), said on stderr when there is one."""
    from workbench.vocabulary import resolve_vocabulary

    words = resolve_vocabulary(speaker_dir, args.vocabulary)
    if words:
        where = args.vocabulary if args.vocabulary else "the speaker's word list"
        shown = ", ".join(words[:5]) + (f", ... ({len(words)} in all)" if len(words) > 5 else "")
        print(f"Word list: {shown} (from {where})", file=sys.stderr)
    return words


def _cmd_models(args: argparse.Namespace) -> int:
    from workbench.models.sizes import pick_size, size_table

    print(f"{'model':14s} {'name':22s} {'parameters':>10s} {'file':>8s} {'held-out WER':>12s} {'RTF here':>9s}")
    for r in size_table(seconds=args.seconds):
        wer = "?" if r.heldout_wer is None else f"{r.heldout_wer:.3f}"
        print(f"{r.model:14s} {r.name:22s} {r.params / 1e6:9.2f}M {r.file_mb:6.1f}MB {wer:>12s} {r.rtf:9.4f}")
    print("RTF: seconds of compute per second of audio, one utterance at a time, measured now on this machine.")
    if args.rtf_budget is not None:
        print(pick_size(args.rtf_budget, seconds=args.seconds)[1])
    return 0


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="synthesize a simulated (not clinical) speaker into a speaker folder",
        description="Synthesize a simulated speaker with TTS voices and atypicality profiles. "
        "The output is a speaker folder (manifest.jsonl + audio/). It is synthetic, not clinical data.",
    )
    p.add_argument("--profile", default="typical",
                   help="profile name or combination, e.g. 'slow', 'articulation+dysfluency', "
                        "'slow:0.8+voice:0.5' (name:severity); see --list")
    p.add_argument("--voice", default=None, help="voice spec, e.g. 'espeak:en-us+m3', 'flite:slt' (default: chosen by seed)")
    p.add_argument("--n", type=int, default=80, help="number of utterances (default 80)")
    p.add_argument("--out", default=None, help="parent folder for the speaker folder")
    p.add_argument("--speaker-id", default=None, help="de-identified speaker id (default: derived from profile and seed)")
    p.add_argument("--prompts", default="everyday", help="prompt list name or a text file (one prompt a line)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="list profiles and voices, then exit")
    p.set_defaults(func=_cmd_simulate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand (later issues fill in the rest)."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Personalize speech recognition for one speaker: record, augment, adapt, evaluate.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole workflow on shipped sample data, offline")
    p.add_argument("--data", default=None, help="sample data folder (default: the shipped sample_data/)")
    p.add_argument("--out", default=None, help="where to write the report (default: ./workbench-demo)")
    p.add_argument("--speaker", default=None, help="which sample speaker (default: sim-dysarthria-severe)")
    p.add_argument("--quick", action="store_true", help="smallest settings (about a minute), for CI")
    p.set_defaults(func=_cmd_demo)

    _add_simulate(sub)

    vocabulary_help = ("a word list: one word or name a line that the speaker uses (family, places, medicines); "
                       "decoding favours them where the audio allows, no retraining (default: the list saved "
                       "in the speaker folder, if any)")
    model_help = ("base model: 'auto' (default: the built-in model for simulated speakers, Whisper tiny.en for real "
                  "people when installed), 'tiny', 'whisper-tiny.en', 'whisper-base', a transformers hub id, or a "
                  "local folder (transformers or CTranslate2/faster-whisper)")
    minutes_help = (f"a ceiling on the training time, in minutes (default {RUN_DEFAULTS.max_minutes:g}). Training "
                    "normally ends sooner, when the model stops improving on the recordings kept aside, so a busy "
                    "computer gives the same model, later; a run this limit cuts short says so")
    p = sub.add_parser("personalize", help="train a personal adapter for one speaker folder")
    p.add_argument("speaker_dir")
    p.add_argument("--model", default=RUN_DEFAULTS.model, help=model_help)
    p.add_argument("--family", default=None, help="adapter family: lora (default), residual, conv, hra or vector")
    p.add_argument("--adapter", dest="family_alias", default=None, metavar="FAMILY",
                   help="the former name of --family (this release only; elsewhere --adapter is a Submodel file)")
    p.add_argument("--minutes", type=float, default=RUN_DEFAULTS.max_minutes, help=minutes_help)
    p.add_argument("--decoder", default=RUN_DEFAULTS.decoder, choices=["greedy", "lexicon"])
    p.add_argument("--seed", type=int, default=RUN_DEFAULTS.seed)
    p.add_argument("--window", default=None, choices=["auto", "full"],
                   help="Whisper only: what the personal model hears. auto (default): the recording + 1 s, about 9x "
                   "cheaper per training step; full: Whisper's 30 s window, which faster-whisper and transformers "
                   "always use: train with it when the model is meant for 'workbench export'")
    p.add_argument("--vocabulary", default=None, metavar="FILE", help=vocabulary_help)
    p.add_argument("--size", default=None, choices=["small", "medium", "large", "auto"],
                   help="a size of the built-in model: small, medium, large, or auto (the largest that runs in "
                   "real time on this computer, measured now); 'workbench models' lists them")
    p.set_defaults(func=_cmd_personalize)

    p = sub.add_parser("train-bank", help="train one Submodel bank for many speakers in one job (torchrun-ready)",
                       description="Train one adapter row per speaker in one job; every batch mixes speakers. "
                       "Run several processes with: torchrun --nproc-per-node N -m workbench.cli train-bank ...")
    p.add_argument("speakers", nargs="+", help="speaker folders, or folders that hold speaker folders")
    p.add_argument("--out", required=True, help="the bank's Submodel file (.safetensors)")
    p.add_argument("--model", default=RUN_DEFAULTS.model, help=model_help)
    p.add_argument("--family", default=None, help="adapter family: lora (default), residual, conv, hra or vector")
    p.add_argument("--adapter", dest="family_alias", default=None, metavar="FAMILY",
                   help="the former name of --family (this release only; elsewhere --adapter is a Submodel file)")
    p.add_argument("--minutes", type=float, default=RUN_DEFAULTS.max_minutes, help=minutes_help)
    p.add_argument("--steps", type=int, default=None, help="at most this many steps (default: the base model's, "
                   f"{RUN_DEFAULTS.max_steps} for the built-in model, {RUN_DEFAULTS.max_steps_seq2seq} for Whisper)")
    p.add_argument("--decoder", default=RUN_DEFAULTS.decoder, choices=["greedy", "lexicon"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: each process's own GPU when there are GPUs, else the CPU")
    p.add_argument("--per-speaker-selection", action="store_true",
                   help="keep each speaker's adapter at its own best validation step (LoRA, residual, conv); "
                        "off by default: it made no measurable difference (docs/results.md)")
    p.add_argument("--speaker-space", type=int, default=None, metavar="DIM",
                   help="learn a speaker-embedding space: each speaker is a DIM-number vector that a shared "
                        "generator turns into its HRA head (warm starts and the speaker map use it)")
    p.add_argument("--seed", type=int, default=RUN_DEFAULTS.seed)
    p.set_defaults(func=_cmd_train_bank)

    p = sub.add_parser("transcribe", help="transcribe audio files with a base model and optional adapter")
    p.add_argument("files", nargs="+")
    p.add_argument("--model", default=RUN_DEFAULTS.model, help=model_help)
    p.add_argument("--adapter", default=None, help="a Submodel file (.safetensors) from 'workbench personalize'")
    p.add_argument("--speaker", default=None, help="with a bank file (workbench train-bank): whose adapter to use")
    p.add_argument("--decoder", default=RUN_DEFAULTS.transcribe_decoder, choices=["greedy", "lexicon"])
    p.add_argument("--server", default=None, metavar="URL",
                   help="send a compressed representation (never the audio) to a clinic server started with "
                        "'workbench serve-asr', e.g. http://127.0.0.1:8200/asr; --speaker picks the Submodel there")
    p.add_argument("--compressor", default=None, help="with --server: the compressor file the server runs "
                   "(default: the one shipped for --model; with --server, --model auto is the built-in model, "
                   "--model whisper-tiny.en the Whisper split)")
    p.add_argument("--token", default=os.environ.get("WORKBENCH_SERVER_TOKEN"),
                   help="with --server: the server's token (default: $WORKBENCH_SERVER_TOKEN)")
    p.add_argument("--vocabulary", default=None, metavar="FILE", help=vocabulary_help)
    p.add_argument("--size", default=None, choices=["small", "medium", "large", "auto"],
                   help="a size of the built-in model: small, medium, large, or auto (the largest that runs in "
                   "real time on this computer, measured now); 'workbench models' lists them")
    p.set_defaults(func=_cmd_transcribe)

    p = sub.add_parser("serve-asr", help="start the clinic server for split recognition (Ray Serve): devices send "
                       "compressed representations, each speaker's Submodel is applied here")
    p.add_argument("--submodels", nargs="*", default=[], help="Submodel or bank files whose speakers it serves")
    p.add_argument("--compressor", default=None, help="compressor file (default: the shipped one)")
    p.add_argument("--model", default="tiny", help="the base model the compressor was trained for: tiny (the "
                   "built-in model) or whisper-tiny.en (the Whisper split)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (anything but this computer "
                   "needs --token)")
    p.add_argument("--port", type=int, default=8200)
    p.add_argument("--token", default=os.environ.get("WORKBENCH_SERVER_TOKEN"),
                   help="a secret clients must send (default: $WORKBENCH_SERVER_TOKEN)")
    p.set_defaults(func=_cmd_serve_asr)

    for name, help_text in (("evaluate", "ASR word error rate of the base model (and an adapter) on a speaker"),
                            ("report", "write an HTML + CSV before/after report for a speaker folder")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("speaker_dir")
        p.add_argument("--model", default=RUN_DEFAULTS.model, help=model_help)
        p.add_argument("--adapter", default=None,
                       help="a Submodel file (default: the speaker's personal model: the run chosen in the app, "
                            "else the newest run that beat the base model)")
        p.add_argument("--decoder", default=RUN_DEFAULTS.decoder, choices=["greedy", "lexicon"])
        p.add_argument("--vocabulary", default=None, metavar="FILE", help=vocabulary_help)
        p.set_defaults(func=_cmd_evaluate if name == "evaluate" else _cmd_report, report=False)

    p = sub.add_parser("import", help="import recordings on disk (audio files + a transcript file) into a speaker folder",
                       description="Import existing recordings: every audio file in FOLDER (WAV, FLAC, OGG, MP3, AIFF) "
                       "whose name matches a transcript becomes a take of SPEAKER_DIR (created if needed; its name is "
                       "the de-identified speaker id). Takes with quality errors are kept as 'rejected'. Running it "
                       "again skips files already imported.")
    p.add_argument("folder", help="the folder that holds the audio files")
    p.add_argument("transcripts", help="a .txt file of '<file name without ending> <sentence>' lines (a tab may "
                   "separate them; names with spaces match the longest file name), or a .csv with id,text columns")
    p.add_argument("speaker_dir", help="the speaker folder to create or add to")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("record", help="record a speaker reading prompts with this computer's microphone")
    p.add_argument("speaker_dir", help="the speaker folder (its name is the de-identified speaker id)")
    p.add_argument("--consent", required=True, help="consent id for this session, e.g. consent-2026-11")
    p.add_argument("--create", action="store_true", help="create the speaker folder if it does not exist")
    p.add_argument("--prompts", default="everyday", help="prompt list for a new speaker (name or text file)")
    p.add_argument("--device", default=None, help="microphone index or name (default: the system default)")
    p.set_defaults(func=_cmd_record)

    from workbench.app import add_serve_arguments  # light: imports neither panel nor torch

    p = sub.add_parser("serve", help="start the local therapist app in your browser")
    add_serve_arguments(p)
    p.set_defaults(func=_cmd_serve)

    from workbench.export.cli import add_export_parser  # light: no torch

    add_export_parser(sub)

    p = sub.add_parser("bench", help="run the benchmarks and write docs/benchmarks.md")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test that every benchmark runs")
    p.add_argument("--only", action="append", help="run one benchmark (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("models", help="the sizes of the built-in model: parameters, file size, WER, speed here")
    p.add_argument("--rtf-budget", type=float, default=None,
                   help="also pick the largest size needing at most this many seconds per second of audio here")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds to time each model (default 2)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("listen", help="live captions from the microphone or a file, with a speaker's personal model",
                       description="Caption speech as it is spoken: committed words are printed as they become final. "
                       "With --speaker, the speaker's personal model is used (the one transcribe and the app use).")
    p.add_argument("--speaker", default=None, metavar="DIR", help="speaker folder whose personal model to use "
                   "(default: the base model alone)")
    p.add_argument("--model", default="auto", help=model_help)
    p.add_argument("--file", default=None, metavar="X.wav", help="caption this audio file, played in real time, "
                   "instead of the microphone")
    p.add_argument("--fast", action="store_true", help="with --file: as fast as possible (the times printed stay "
                   "those of real-time playback)")
    p.add_argument("--json", action="store_true", help='one JSON object a line: {"event": "commit"|"partial", '
                   '"text", "start", "end", "emitted"} (seconds)')
    p.add_argument("--device", default=None, help="microphone index or name (default: the system default)")
    p.add_argument("--vocabulary", default=None, metavar="FILE", help=vocabulary_help)
    p.add_argument("--size", default=None, choices=["small", "medium", "large", "auto"],
                   help="a size of the built-in model: small, medium, large, or auto (the largest that runs in "
                   "real time on this computer, measured now); 'workbench models' lists them")
    p.set_defaults(func=_cmd_listen)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from workbench import __version__

        print(f"workbench {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    from workbench import _threads

    _threads.apply_threads()  # a CPU set smaller than the machine, or WORKBENCH_THREADS=N (issue 16)
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as err:
        print(f"workbench {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted; nothing already saved was lost.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
