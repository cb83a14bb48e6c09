"""Train Device Tuning compressors for the built-in model (issue 19).

One compressor per operating point (symbols per frame x bits, frame stride) at one split layer,
trained on the pretraining recipe's synthetic voices (``recipes/pretrain``, the same cached corpus
and the same held-out voices and phrases, which are never trained on). The device part (frontend +
the first ``--split`` blocks) and the server part are frozen; only the compressor learns, by
distillation to the unsplit model plus CTC (:mod:`workbench.device_tuning.train`).

    # about 3 min synthesis (cached) + --minutes per point
    python recipes/train_compressor.py --n-train 1500 --minutes 4 --points 16x3s2 12x3s2 8x3s2 16x2s4
    python recipes/train_compressor.py ... --resume      # skips the points already written

Each point is written as ``<out>/tiny-k<split>-<point>.safetensors`` (atomic; a finished point is
never trained again with --resume). ``bench/bench_device_tuning.py`` measures them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pretrain.data import add_corpus_arguments, build_data  # noqa: E402  (recipes/ is not a package)

from workbench.constants import cache_dir  # noqa: E402
from workbench.device_tuning import Compressor, SplitModel  # noqa: E402
from workbench.device_tuning.compressor import save_compressor  # noqa: E402
from workbench.device_tuning.train import CompressorTraining, train_compressor  # noqa: E402
from workbench.models import load_base_model  # noqa: E402
from workbench.models.base import CachedFeatures  # noqa: E402

_POINT = re.compile(r"(\d+)x(\d)s(\d)")


def default_out() -> Path:
    return cache_dir() / "compressors"


def parse_point(text: str) -> tuple[int, int, int]:
    """``"16x3s2"`` -> (dims 16, bits 3, stride 2)."""
    m = _POINT.fullmatch(text)
    if not m:
        raise SystemExit(f"operating point {text!r} is not DIMSxBITSsSTRIDE, e.g. 16x3s2")
    return int(m[1]), int(m[2]), int(m[3])


def device_hidden_from_features(backend, feats_items, split: int, batch: int = 32) -> list[CachedFeatures]:
    """Cached log-mel ``(T, 80)`` items -> device outputs: hidden ``(T', D)`` after block ``split``
    (the ``samples`` field holds ``T'``: the built-in model's decoding does not read it)."""
    model = backend.model
    out = []
    with torch.no_grad():
        for s in range(0, len(feats_items), batch):
            chunk = feats_items[s:s + batch]
            lens = torch.tensor([f.shape[0] for f, _ in chunk])
            x = torch.zeros(len(chunk), int(lens.max()), chunk[0][0].shape[1])
            for i, (f, _) in enumerate(chunk):
                x[i, :f.shape[0]] = torch.as_tensor(f).float()
            h, hl = model.subsample(x, lens)
            h, hl = backend.run_blocks(h, hl, stop=split)
            out += [CachedFeatures(h[i, :n].clone(), int(n), int(n), split) for i, n in enumerate(hl.tolist())]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", type=int, default=4, help="encoder blocks on the device")
    p.add_argument("--points", nargs="+", default=["16x3s2", "12x3s2", "8x3s2", "16x2s4"],
                   help="operating points DIMSxBITSsSTRIDE")
    p.add_argument("--minutes", type=float, default=4.0, help="training time per point")
    p.add_argument("--ctc-weight", type=float, default=0.2)
    p.add_argument("--rate-weight", type=float, default=0.0,
                   help="weight of the estimated bits per symbol in the loss (0: no rate term)")
    p.add_argument("--tag", default="", help="suffix of the output names (e.g. r05 for a rate-weighted run)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, default=default_out())
    p.add_argument("--threads", type=int, default=2)
    add_corpus_arguments(p, n_train=1500)  # the pretraining corpus's flags: the same values, the same cache
    p.add_argument("--resume", action="store_true", help="skip points already written")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    points = [(t, *parse_point(t)) for t in args.points]

    backend = load_base_model("tiny").freeze()
    data = build_data(args, args.cache)
    hidden = device_hidden_from_features(backend, data["train"], args.split)
    texts = [t for _, t in data["train"]]
    print(f"device outputs: {len(hidden)} utterances after block {args.split}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, dims, bits, stride in points:
        path = args.out / f"tiny-k{args.split}-{name}{'-' + args.tag if args.tag else ''}.safetensors"
        if args.resume and path.exists():
            print(f"{name}: done already ({path})")
            continue
        split = SplitModel(backend, args.split, Compressor(backend.hidden_size, dims, bits, stride))
        t0 = time.time()
        hist = train_compressor(split, hidden, texts, CompressorTraining(
            seconds=60 * args.minutes, batch_size=args.batch_size, lr=args.lr, ctc_weight=args.ctc_weight,
            rate_weight=args.rate_weight, seed=args.seed), on_step=lambda r: r["step"] % 100 == 0 and print(
                f"  {name} step {r['step']} loss {r['loss']:.3f} (kd {r['kd']:.3f}, ctc {r['ctc']:.3f})", flush=True))
        card = {"point": name, "dims": dims, "bits": bits, "stride": stride, "steps": len(hist),
                "train_s": round(time.time() - t0, 1), "final_loss": hist[-1]["loss"] if hist else None,
                "n_train": len(hidden), "ctc_weight": args.ctc_weight, "rate_weight": args.rate_weight, "lr": args.lr,
                "corpus": "recipes/pretrain synthetic voices (held-out voices and phrases excluded)",
                "threads": args.threads}
        save_compressor(split.compressor, path, split_layer=args.split, base_fingerprint=backend.fingerprint(),
                        card=card)
        print(f"{name}: {len(hist)} steps in {card['train_s']} s -> {path}", json.dumps(card), flush=True)


if __name__ == "__main__":
    main()
