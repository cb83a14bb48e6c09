"""``workbench transcribe``: audio files to text, here (a base model and a Submodel file) or on a
clinic server (``--server``: only a compressed representation leaves this computer).

Prints ``file<TAB>text`` lines on stdout; what a person should know (which models, why a
transcript is empty or doubtful) goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.cli_args import (
    add_decoder_argument,
    add_model_arguments,
    add_submodel_argument,
    add_token_argument,
    add_vocabulary_argument,
    load_models,
    say,
    vocabulary,
)
from workbench.defaults import RUN_DEFAULTS
from workbench.errors import UsageError

__all__ = ["add_transcribe_parser"]

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


def _cmd_transcribe_remote(args: argparse.Namespace) -> int:
    """``transcribe --server URL``: the device part runs here; only the compressed representation is sent."""
    from workbench.constants import SAMPLE_RATE
    from workbench.device_tuning.client import DeviceClient, summary_line
    from workbench.device_tuning.compressor import default_compressor

    dec = RUN_DEFAULTS.transcribe_decoder
    if args.decoder != dec or args.adapter:
        ignored = [f for f, on in (("--decoder", args.decoder != dec), ("--adapter", bool(args.adapter))) if on]
        say(f"Note: {' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored with --server: the "
            "server decodes with the Submodel it holds for --speaker")
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
    say(f"{summary_line(sent, seconds)} to {args.server} (no audio left this computer)")
    if args.speaker and wavs and not base_only:
        say(f"Personal model: the server's Submodel for {args.speaker!r}")
    if args.speaker and base_only:
        say(f"Note: the server holds no Submodel for speaker {args.speaker!r}, so the base model alone "
            f"transcribed {base_only} of {len(wavs)} file(s). Check the spelling of --speaker (the server's "
            "speakers are listed by GET on its address), or start it with that speaker's Submodel.")
    return _report_transcripts(args.files, texts, notes)


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from workbench.models.supernet.adapters import load_adapter
    from workbench.workflow import bank_row, build_decoder

    if args.server:
        return _cmd_transcribe_remote(args)
    words = vocabulary(args, None)  # a bad list is refused before a model loads
    backend, _ = load_models(None, args.model, args.adapter, size=args.size)
    if args.adapter is None:
        say("Personal model: none (no --adapter given); the base model alone is used")
    wavs, notes = _load_for_transcribe(args.files)
    decoder = build_decoder(args.decoder, backend=backend, vocabulary=words)
    if args.adapter:
        adapted, meta = load_adapter(backend, args.adapter)  # a supernet adapter is cut for the size in use
        if meta.get("sliced_for"):
            say(f"The personal adapter was trained on the {meta['supernet']['made_for']} size; it is cut for the "
                f"{meta['sliced_for']} size in use.")
        held = meta.get("speaker_ids", [])
        if args.speaker and len(held) == 1 and args.speaker != held[0]:
            raise UsageError(f"this Submodel file is {held[0]!r}'s, not {args.speaker!r}'s; leave out --speaker "
                             "or choose that speaker's file")
        rows = [bank_row(meta, args.speaker)] * len(wavs) if adapted.num_speakers > 1 else None
        texts = adapted.transcribe(wavs, decoder=decoder, speakers=rows)
    else:
        texts = backend.transcribe(wavs, decoder=decoder)
    return _report_transcripts(args.files, texts, notes)


def add_transcribe_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``transcribe`` on the ``workbench`` command's subparsers."""
    p = sub.add_parser("transcribe", help="transcribe audio files with a base model and optional adapter")
    p.add_argument("files", nargs="+")
    add_model_arguments(p, size=True)
    add_submodel_argument(p, "a Submodel file (.safetensors) from 'workbench personalize'")
    p.add_argument("--speaker", default=None, help="with a bank file (workbench train-bank): whose adapter to use")
    add_decoder_argument(p, RUN_DEFAULTS.transcribe_decoder)  # free speech: no prompt-domain lexicon
    p.add_argument("--server", default=None, metavar="URL",
                   help="send a compressed representation (never the audio) to a clinic server started with "
                        "'workbench serve-asr', e.g. http://127.0.0.1:8200/asr; --speaker picks the Submodel there")
    p.add_argument("--compressor", default=None, help="with --server: the compressor file the server runs "
                   "(default: the one shipped for --model; with --server, --model auto is the built-in model, "
                   "--model whisper-tiny.en the Whisper split)")
    add_token_argument(p, "with --server: the server's token (default: $WORKBENCH_SERVER_TOKEN)")
    add_vocabulary_argument(p)
    p.set_defaults(func=_cmd_transcribe)
    return p
