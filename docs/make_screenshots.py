"""Make the README's tour images (``docs/img/*.png``) from real runs on the shipped sample data.

Nothing here is staged: every plot comes from the built-in model and a sample
speaker, and the app screenshots are of the real app (``workbench serve``) in
Debian's headless Chromium, on a temporary copy of the sample speakers.

1. ``specaugment.png``: adaptive SpecAugment draws on one recording (notebook 02);
2. ``training.png``, ``wer.png``, ``report.png``: a personalization of
   ``sim-dysarthria-severe`` with the default settings (notebook 03): the live
   curves, WER before/after, and the HTML report with its word-by-word table;
3. ``embeddings.png``: d-vectors of the eight sample speakers (notebook 04);
4. ``app-speakers.png``, ``app-record.png``, ``app-results.png``, ``app-live.png``: the app (live
   captions of the speaker's recordings, played by Chromium's fake microphone).

Run: ``python docs/make_screenshots.py [--out docs/img] [--budget 45] [--no-app]`` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
SPEAKER = "sim-dysarthria-severe"
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser")]  # a source checkout, installed or not


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"wrote {path}")


def specaugment(out: Path) -> None:
    from workbench.augment import POLICIES
    from workbench.corpus import SpeakerCorpus
    from workbench.features import LogMel, pad_waveforms
    from workbench.plots import plot_augment_grid

    corpus = SpeakerCorpus.open(SAMPLE / SPEAKER)
    utt = max(corpus.utterances("ok")[:10], key=lambda u: u.duration_s)
    feats, frames = LogMel()(*pad_waveforms([corpus.load_audio(utt)]))
    _save(plot_augment_grid(feats[0], POLICIES["librispeech_adaptive"], n=4), out / "specaugment.png")


def personalize(out: Path, data: Path, budget: float) -> Path:
    """Personalize a copy of the sample speaker; returns the report's HTML path."""
    from workbench.trainer import TrainConfig
    from workbench.plots import plot_training_curve, plot_wer_before_after
    from workbench.workflow import personalize_speaker

    shutil.copytree(SAMPLE / SPEAKER, data / SPEAKER)
    run = personalize_speaker(data / SPEAKER, config=TrainConfig(time_limit_s=budget), decoder="lexicon",
                              max_train=50, progress=False)
    run.adapted.remove()
    _save(plot_training_curve(run.train_result.history, title=f"Personalizing {SPEAKER} (LoRA)"), out / "training.png")
    c = run.comparison
    _save(plot_wer_before_after(c.wer_before, c.wer_after, interval=(c.interval["diff_low"], c.interval["diff_high"]), label=SPEAKER), out / "wer.png")
    return run.report_html


def embeddings(out: Path) -> None:
    from workbench.embeddings import embed_corpora
    from workbench.plots import plot_embedding_map

    vectors = embed_corpora(SAMPLE, "dvector", max_per_speaker=20, threads=2)
    _save(plot_embedding_map(vectors, method="pca", color_by="profile"), out / "embeddings.png")


def _serve(data: Path) -> tuple[subprocess.Popen, str]:
    from _browser import free_port, wait_listening

    port = free_port()
    log = (data.parent / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "serve", "--data", str(data), "--port", str(port),
                             "--no-browser"], cwd=data, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    if not wait_listening(proc, port):
        proc.kill()
        raise RuntimeError("the app did not start:\n" + (data.parent / "serve.log").read_text())
    return proc, f"http://127.0.0.1:{port}"


def _microphone_file(speaker: Path, path: Path) -> Path:
    """Three of the speaker's recordings with 1.2 s pauses, as a 16-bit WAV for Chromium's fake microphone."""
    import json

    import numpy as np
    import soundfile as sf

    from workbench.audio import load_audio

    rows = [json.loads(x) for x in (speaker / "manifest.jsonl").read_text().splitlines() if x.strip()][:3]
    pause = np.zeros(int(1.2 * 16_000), np.float32)
    parts = [pause]
    for row in rows:
        parts += [load_audio(speaker / row["audio_path"]), pause]
    sf.write(path, np.concatenate(parts), 16_000, subtype="PCM_16")
    return path


def screenshots(out: Path, data: Path, report: Path) -> None:
    from _browser import ARGS, CHROMIUM, browser_problems, nav, shot
    from playwright.sync_api import expect, sync_playwright

    problems = browser_problems(panel=True)
    if problems:
        raise RuntimeError("cannot take the app screenshots: " + "; ".join(problems))
    for other in ("sim-typical-espeak", "sim-accent"):
        shutil.copytree(SAMPLE / other, data / other)
    mic = _microphone_file(data / SPEAKER, data.parent / "microphone.wav")
    proc, url = _serve(data)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM,
                                         args=[*ARGS, f"--use-file-for-fake-audio-capture={mic}"])
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.set_default_timeout(60_000)
            page.goto(report.as_uri())
            page.screenshot(path=out / "report.png", full_page=False)
            print(f"wrote {out / 'report.png'}")
            page.goto(url + "/")
            expect(page.get_by_role("heading", name="Speakers")).to_be_visible()
            shot(page, out / "app-speakers.png")
            page.get_by_label("Speaker", exact=True).select_option(SPEAKER)
            page.get_by_role("button", name="Open this speaker").click()
            expect(page.get_by_text(f"Opened {SPEAKER}")).to_be_visible()
            nav(page, "Record")
            expect(page.get_by_role("heading", name=f"Record: {SPEAKER}")).to_be_visible()
            shot(page, out / "app-record.png")
            nav(page, "Results")
            expect(page.get_by_role("heading", name=f"Results: {SPEAKER}")).to_be_visible()
            expect(page.get_by_text("Base model:")).to_be_visible()
            shot(page, out / "app-results.png")
            nav(page, "Live captions")
            expect(page.get_by_role("heading", name=f"Live captions: {SPEAKER}")).to_be_visible()
            start = page.locator(".wb-rec-record")
            expect(start).to_be_enabled()  # once the model is loaded
            start.click()
            expect(page.locator(".wb-captions .wb-line[data-line]").nth(1)).to_be_visible(timeout=20_000)  # two caption lines (the second phrase ends after about 6 s of audio)
            shot(page, out / "app-live.png")
            page.get_by_role("button", name="■ Stop").click()  # Start stays disabled while captioning
            for name in ("app-speakers", "app-record", "app-results", "app-live"):
                print(f"wrote {out / name}.png")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--budget", type=float, default=45.0, help="training seconds of the personalization")
    parser.add_argument("--no-app", action="store_true", help="skip the report and app screenshots (no browser)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "speakers"
        data.mkdir()
        specaugment(args.out)
        report = personalize(args.out, data, args.budget)
        embeddings(args.out)
        if not args.no_app:
            screenshots(args.out, data, report)


if __name__ == "__main__":
    main()
