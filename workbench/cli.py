"""The ``workbench`` command line.

Each subcommand is a thin wrapper: it parses arguments, calls the core, and
turns a :class:`~workbench.errors.WorkbenchError` into a plain message and exit
code 2 (never a traceback); flags that do not go together are a
:class:`~workbench.errors.UsageError`. Subcommands import their module lazily so that
``workbench --help`` is fast and works with only the core installed.

Each subcommand has one ``_cmd_<command>`` (what it does) and one ``_add_<command>`` (its
flags). The flags several commands share are added and read in :mod:`workbench.cli_args`;
``transcribe`` lives in :mod:`workbench.cli_transcribe`, ``export`` in :mod:`workbench.export.cli`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.cli_args import (
    add_decoder_argument,
    add_microphone_argument,
    add_model_arguments,
    add_submodel_argument,
    add_token_argument,
    add_training_arguments,
    add_vocabulary_argument,
    adapter_choice,
    family,
    load_models,
    say,
    training_limits,
    vocabulary,
)
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import NotYetSupportedError, UsageError, WorkbenchError

__all__ = ["build_parser", "main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from workbench.demo import run_demo

    return run_demo(data_dir=args.data, out_dir=args.out, quick=args.quick, speaker=args.speaker)


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


def _cmd_personalize(args: argparse.Namespace) -> int:
    from workbench.models.supernet.adapters import SandwichLoRA
    from workbench.plots import report_figures
    from workbench.workflow import default_config, personalize_speaker

    limits, adapter = training_limits(args), adapter_choice(family(args))  # bad flags: refused before a model loads
    words = vocabulary(args, args.speaker_dir)  # a bad list too
    backend, _ = load_models(args.speaker_dir, args.model, personal=False, size=args.size)
    config = default_config(backend, seed=args.seed, **limits, **adapter)
    run = personalize_speaker(args.speaker_dir, backend=backend, config=config,
                              decoder=args.decoder, seed=args.seed, figures=report_figures, window=args.window,
                              vocabulary=words)
    print(run.comparison.summary())
    if run.train_result.cut_short:  # the time ceiling ended the run before it converged
        print(f"Note: {run.train_result.cut_short} (a longer --minutes, or a quieter computer).")
    if run.advice:  # no improvement: what to do next (the run is not used as the personal model)
        print(run.advice)
    print(f"Personal adapter: {run.submodel_path}")
    if run.submodel_path and isinstance(run.adapted, SandwichLoRA):  # the supernet's largest size (--size large)
        print("It serves every size of the built-in model (small, medium, large): it was trained on the largest, "
              "with every size at each step.")
    print(f"Report: {run.report_html}")
    return 0


def _cmd_train_bank(args: argparse.Namespace) -> int:
    from workbench import distributed
    from workbench.workflow import default_config, train_bank

    device = distributed.init_from_env(args.device)  # joins the torchrun job, if this is one
    finished = False
    try:
        name = family(args)
        limits, adapter = training_limits(args), adapter_choice(name)
        if args.speaker_space is not None:
            from workbench.adapters import HRAConfig

            if args.speaker_space < 1:
                raise UsageError(f"--speaker-space must be at least 1 number per speaker, got "
                                 f"{args.speaker_space} (16 is a good start)")
            if name not in (None, "hra"):
                raise UsageError("--speaker-space learns HRA heads from a vector per speaker; leave out "
                                 f"--family {name} or use --family hra")
            adapter = {"adapter": HRAConfig(space="embedding", embed_dim=args.speaker_space)}
        from workbench.models import load_base_model

        from workbench.workflow import speaker_folders
        from workbench.workflow.bank import bank_base_model

        choice = bank_base_model(speaker_folders(args.speakers), args.model)  # auto: the speakers' kind decides
        if args.model == "auto" and distributed.is_main():
            print(choice.reason[0].upper() + choice.reason[1:], file=sys.stderr)
        backend = load_base_model(choice.name, device=device, offline=args.model == "auto")
        config = default_config(backend, seed=args.seed, per_speaker_selection=args.per_speaker_selection,
                                **limits, **adapter)
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


def _cmd_serve_asr(args: argparse.Namespace) -> int:
    from workbench.device_tuning.compressor import default_compressor
    from workbench.device_tuning.server import serve_asr

    serve_asr(args.compressor or default_compressor(args.model), args.submodels, host=args.host, port=args.port,
              token=args.token, model=args.model)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from workbench.plots import report_figures
    from workbench.workflow import evaluate_speaker

    words = vocabulary(args, args.speaker_dir)  # a bad list is refused before a model loads
    result = evaluate_speaker(args.speaker_dir, model=args.model, adapter=args.adapter, decoder=args.decoder,
                              write_report=args.report, figures=report_figures, vocabulary=words, say=say)
    if result.report_html is not None:
        print(f"Report: {result.report_html}")
    print(result.summary())
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
        from workbench.models.supernet.sizes import sized_model

        args.model, reason = sized_model(args.size, args.model)
        say(reason[0].upper() + reason[1:])
    words = vocabulary(args, args.speaker)
    if words:  # the word list biases the search of the backend the recognizer is given
        backend, _ = load_models(args.speaker, args.model)
        if backend.is_seq2seq:
            backend.logit_bias = backend.vocabulary_bias(words)
        else:
            print(f"Note: live captions with {backend.name} do not use the word list yet (Whisper's do); "
                  "transcribe and evaluate use it.", file=sys.stderr)
        options["backend"] = backend
    return listen(args.speaker, args.model, file=args.file, fast=args.fast, as_json=args.json, device=args.device,
                  **options)


def _cmd_models(args: argparse.Namespace) -> int:
    from workbench.models.supernet.sizes import pick_size, size_table

    print(f"{'model':14s} {'name':22s} {'parameters':>10s} {'file':>8s} {'held-out WER':>12s} {'RTF here':>9s}")
    for r in size_table(seconds=args.seconds):
        wer = "?" if r.heldout_wer is None else f"{r.heldout_wer:.3f}"
        print(f"{r.model:14s} {r.name:22s} {r.params / 1e6:9.2f}M {r.file_mb:6.1f}MB {wer:>12s} {r.rtf:9.4f}")
    print("RTF: seconds of compute per second of audio, one utterance at a time, measured now on this machine.")
    if args.rtf_budget is not None:
        print(pick_size(args.rtf_budget, seconds=args.seconds)[1])
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole workflow on shipped sample data, offline")
    p.add_argument("--data", default=None, help="sample data folder (default: the shipped sample_data/)")
    p.add_argument("--out", default=None, help="where to write the report (default: ./workbench-demo)")
    p.add_argument("--speaker", default=None, help="which sample speaker (default: sim-dysarthria-severe)")
    p.add_argument("--quick", action="store_true", help="smallest settings (about a minute), for CI")
    p.set_defaults(func=_cmd_demo)


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


def _add_personalize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("personalize", help="train a personal adapter for one speaker folder")
    p.add_argument("speaker_dir")
    add_training_arguments(p, size=True)
    p.add_argument("--window", default=None, choices=["auto", "full"],
                   help="Whisper only: what the personal model hears. auto (default): the recording + 1 s, about 9x "
                   "cheaper per training step; full: Whisper's 30 s window, which faster-whisper and transformers "
                   "always use: train with it when the model is meant for 'workbench export'")
    add_vocabulary_argument(p)
    p.set_defaults(func=_cmd_personalize)


def _add_train_bank(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-bank", help="train one Submodel bank for many speakers in one job (torchrun-ready)",
                       description="Train one adapter row per speaker in one job; every batch mixes speakers. "
                       "Run several processes with: torchrun --nproc-per-node N -m workbench.cli train-bank ...")
    p.add_argument("speakers", nargs="+", help="speaker folders, or folders that hold speaker folders")
    p.add_argument("--out", required=True, help="the bank's Submodel file (.safetensors)")
    add_training_arguments(p)
    p.add_argument("--steps", type=int, default=None, help="at most this many steps (default: the base model's, "
                   f"{RUN_DEFAULTS.max_steps} for the built-in model, {RUN_DEFAULTS.max_steps_seq2seq} for Whisper)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: each process's own GPU when there are GPUs, else the CPU")
    p.add_argument("--per-speaker-selection", action="store_true",
                   help="keep each speaker's adapter at its own best validation step (LoRA, residual, conv); "
                        "off by default: it made no measurable difference (docs/results.md)")
    p.add_argument("--speaker-space", type=int, default=None, metavar="DIM",
                   help="learn a speaker-embedding space: each speaker is a DIM-number vector that a shared "
                        "generator turns into its HRA head (warm starts and the speaker map use it)")
    p.set_defaults(func=_cmd_train_bank)


def _add_serve_asr(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve-asr", help="start the clinic server for split recognition (Ray Serve): devices send "
                       "compressed representations, each speaker's Submodel is applied here")
    p.add_argument("--submodels", nargs="*", default=[], help="Submodel or bank files whose speakers it serves")
    p.add_argument("--compressor", default=None, help="compressor file (default: the shipped one)")
    p.add_argument("--model", default="tiny", help="the base model the compressor was trained for: tiny (the "
                   "built-in model) or whisper-tiny.en (the Whisper split)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (anything but this computer "
                   "needs --token)")
    p.add_argument("--port", type=int, default=8200)
    add_token_argument(p, "a secret clients must send (default: $WORKBENCH_SERVER_TOKEN)")
    p.set_defaults(func=_cmd_serve_asr)


def _add_scoring(sub: argparse._SubParsersAction, name: str, help_text: str, func) -> None:
    """The flags ``evaluate`` and ``report`` share: a speaker folder, its models, the decoder, the word list."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("speaker_dir")
    add_model_arguments(p)
    add_submodel_argument(p, "a Submodel file (default: the speaker's personal model: the run chosen in the app, "
                             "else the newest run that beat the base model)")
    add_decoder_argument(p)
    add_vocabulary_argument(p)
    p.set_defaults(func=func, report=False)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    _add_scoring(sub, "evaluate", "ASR word error rate of the base model (and an adapter) on a speaker", _cmd_evaluate)


def _add_report(sub: argparse._SubParsersAction) -> None:
    _add_scoring(sub, "report", "write an HTML + CSV before/after report for a speaker folder", _cmd_report)


def _add_import(sub: argparse._SubParsersAction) -> None:
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


def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record a speaker reading prompts with this computer's microphone")
    p.add_argument("speaker_dir", help="the speaker folder (its name is the de-identified speaker id)")
    p.add_argument("--consent", required=True, help="consent id for this session, e.g. consent-2026-11")
    p.add_argument("--create", action="store_true", help="create the speaker folder if it does not exist")
    p.add_argument("--prompts", default="everyday", help="prompt list for a new speaker (name or text file)")
    add_microphone_argument(p)
    p.set_defaults(func=_cmd_record)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from workbench.app import add_serve_arguments  # light: imports neither panel nor torch

    p = sub.add_parser("serve", help="start the local therapist app in your browser")
    add_serve_arguments(p)
    p.set_defaults(func=_cmd_serve)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the benchmarks and write docs/benchmarks.md")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test that every benchmark runs")
    p.add_argument("--only", action="append", help="run one benchmark (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=_cmd_bench)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the sizes of the built-in model: parameters, file size, WER, speed here")
    p.add_argument("--rtf-budget", type=float, default=None,
                   help="also pick the largest size needing at most this many seconds per second of audio here")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds to time each model (default 2)")
    p.set_defaults(func=_cmd_models)


def _add_listen(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("listen", help="live captions from the microphone or a file, with a speaker's personal model",
                       description="Caption speech as it is spoken: committed words are printed as they become final. "
                       "With --speaker, the speaker's personal model is used (the one transcribe and the app use).")
    p.add_argument("--speaker", default=None, metavar="DIR", help="speaker folder whose personal model to use "
                   "(default: the base model alone)")
    add_model_arguments(p, size=True)
    p.add_argument("--file", default=None, metavar="X.wav", help="caption this audio file, played in real time, "
                   "instead of the microphone")
    p.add_argument("--fast", action="store_true", help="with --file: as fast as possible (the times printed stay "
                   "those of real-time playback)")
    p.add_argument("--json", action="store_true", help='one JSON object a line: {"event": "commit"|"partial", '
                   '"text", "start", "end", "emitted"} (seconds)')
    add_microphone_argument(p)
    add_vocabulary_argument(p)
    p.set_defaults(func=_cmd_listen)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand, one ``_add_<command>`` each (shared flags: :mod:`workbench.cli_args`)."""
    from workbench.cli_transcribe import add_transcribe_parser
    from workbench.export.cli import add_export_parser  # light: no torch

    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Personalize speech recognition for one speaker: record, augment, adapt, evaluate.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_simulate(sub)
    _add_personalize(sub)
    _add_train_bank(sub)
    add_transcribe_parser(sub)
    _add_serve_asr(sub)
    _add_evaluate(sub)
    _add_report(sub)
    _add_import(sub)
    _add_record(sub)
    _add_serve(sub)
    add_export_parser(sub)
    _add_bench(sub)
    _add_models(sub)
    _add_listen(sub)
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
