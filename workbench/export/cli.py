"""``workbench export``: the command line of :func:`workbench.export.export_model`.

Light to import (no torch): ``workbench --help`` stays fast.
"""

from __future__ import annotations

import argparse

__all__ = ["add_export_parser"]

_DESCRIPTION = """Export a speaker's personal model for another speech recognition engine:
ct2 (faster-whisper / CTranslate2), ggml (whisper.cpp), hf (transformers) for a Whisper
personal model; onnx (ONNX Runtime) for the built-in model. The adapter is merged into the
base weights (LoRA, vector) and the merged model is checked against the personal model before
anything is written. The folder holds a model card (README.md) with the decoding settings
to use. Engines: pip install 'workbench[export]'."""


def _cmd_export(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from workbench.export import export_model
    from workbench.notices import Notice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)  # printed below, once, after the summary
        result = export_model(args.source, args.format, args.out, speaker=args.speaker,
                              quantization=args.quantization, force=args.force, model=args.model)
    print(result.summary())
    for note in result.notes:
        print(f"Warning: {note}", file=sys.stderr)
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``export`` on the ``workbench`` command's subparsers."""
    p = sub.add_parser("export", help="export a personal model for faster-whisper, whisper.cpp, transformers or "
                       "ONNX Runtime", description=_DESCRIPTION)
    p.add_argument("source", help="a speaker folder (its personal model), a Submodel file (.safetensors), or a bank "
                   "with --speaker ID")
    p.add_argument("--format", required=True, choices=["ct2", "ggml", "hf", "onnx"],
                   help="ct2: faster-whisper; ggml: whisper.cpp; hf: transformers; onnx: ONNX Runtime (built-in model)")
    p.add_argument("--out", required=True, help="the folder to create (it appears complete or not at all)")
    p.add_argument("--speaker", default=None, help="with a bank file: whose personal model to export")
    p.add_argument("--quantization", default=None, choices=["int8", "float16", "float32"],
                   help="weights: ct2 float32 (default: the personal model's words), int8 (a quarter of the size and faster, but "
                   "other words on some recordings) or float16; ggml float16 (whisper.cpp cannot run "
                   "float32); hf and onnx float32")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder (once the new one is "
                   "complete)")
    p.add_argument("--model", default=None, help="the base model to load instead of the one the file names (a local "
                   "folder); the file must have been trained on it")
    p.set_defaults(func=_cmd_export)
    return p
