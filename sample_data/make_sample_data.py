"""Build sample_data/: eight SIMULATED speakers (synthetic speech, not clinical data).

Usage::

    python sample_data/make_sample_data.py            # rebuild every speaker folder here
    python sample_data/make_sample_data.py --n 40 --out /tmp/sd

Needs espeak-ng and flite (``sudo apt-get install espeak-ng flite``). The
output is deterministic: same script, same engines, same audio, manifests and
utterance ids (only the creation times differ). Each speaker reads
its own seeded random subset of ``workbench/data/prompts/everyday.txt``. The
README.md next to this script is rewritten with the table of speakers and the
measured durations.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from workbench.corpus import SpeakerCorpus  # noqa: E402
from workbench.simulate import simulate_speaker  # noqa: E402

# speaker_id, profile, voice, seed, what it simulates
SPEAKERS = [
    ("sim-typical-espeak", "typical", "espeak:en-us+m3,rate=165,pitch=45", 101,
     "typical control speaker (espeak-ng, American English, male variant m3)"),
    ("sim-typical-flite", "typical", "flite:slt", 102,
     "typical control speaker (flite, female CMU Arctic voice slt)"),
    ("sim-dysarthria-severe", "dysarthria-severe", "espeak:en-us+f2,rate=160,pitch=55", 201,
     "severe dysarthria-like: very slow, long pauses, substituted/dropped consonants, breathy, flat, nasal, tremor"),
    ("sim-als-like", "als-like", "espeak:en-gb-x-rp+m7,rate=150", 202,
     "ALS-like (bulbar): slow, strongly hypernasal, imprecise consonants, breathy"),
    ("sim-parkinsonian", "parkinsonian:1.0+articulation:0.5", "espeak:en-us+m5,rate=170,pitch=40", 203,
     "Parkinson's-like (hypokinetic): monotone, quiet, breathy, rushes of fast speech, imprecise consonants"),
    ("sim-stutter", "dysfluency:0.85", "espeak:en-gb+m2,rate=170", 204,
     "stuttering-like: part-word repetitions, prolongations and blocks"),
    ("sim-accent", "accent:0.9+articulation:0.3", "espeak:en-029+f4", 205,
     "strong accent-like sound changes (not a disorder) with light articulation changes, Caribbean English voice"),
    ("sim-voice-tremor", "slow:0.6+tremor:0.9+breathy:0.7+monopitch:0.7+rush:0.3", "flite:awb,pitch=-10", 206,
     "voice-dominant dysarthria-like: strong tremor, breathy, flat, slow (flite voice: no phoneme changes)"),
]


def build(out: Path, n: int) -> list[dict]:
    rows = []
    for speaker_id, profile, voice, seed, about in SPEAKERS:
        folder = out / speaker_id
        if folder.exists():
            meta = folder / "speaker.json"
            info = json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}
            if not info.get("simulated"):
                raise SystemExit(f"{folder} exists and is not a simulated speaker folder; move it away first.")
            shutil.rmtree(folder)
        start = time.perf_counter()
        corpus = simulate_speaker(out, speaker_id=speaker_id, voice=voice, profile=profile, prompts="everyday",
                                  n=n, seed=seed, display_name=f"Simulated: {about}")
        utts = corpus.utterances()
        seconds = sum(u.duration_s for u in utts)
        rows.append({"id": speaker_id, "profile": profile, "voice": voice, "seed": seed, "about": about,
                     "ok": len(utts), "rejected": len(corpus.utterances(status="rejected")), "seconds": seconds,
                     "spec": corpus.info["profile"]["profile"]["spec"]})
        took = time.perf_counter() - start
        print(f"{speaker_id}: {len(utts)} ok takes, {seconds / 60:.1f} min of audio ({took:.0f} s)")
    return rows


def write_readme(out: Path, rows: list[dict], n: int) -> None:
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    lines = [
        "# Sample data: simulated speakers",
        "",
        "**Everything here is SYNTHETIC speech made by text-to-speech engines with simulated",
        "atypicality profiles (`workbench.simulate`). It is not clinical data, comes from no real",
        "person, and says nothing about how people with these conditions actually sound or how",
        "well ASR works for them.** It exists so that the notebooks, the app and the tests can run",
        "offline on something that behaves like a personalization problem.",
        "",
        f"Eight speakers, {n} utterances each, read from seeded random subsets of",
        "`workbench/data/prompts/everyday.txt`. Every folder is a `workbench.corpus.SpeakerCorpus`",
        "(`speaker.json` with `simulated: true` and the full profile and voice, `manifest.jsonl`,",
        "`audio/*.flac` at 16 kHz mono 16-bit). Each take's `extra` holds its seed and the",
        "phoneme plan: the espeak phonemes, what the simulated speaker said instead, the rules",
        "used and the counts of edits, repetitions, prolongations, blocks and pauses. The",
        "transcript of every take is the prompt (the intended words).",
        "",
        "| speaker | simulates | profile | voice | ok takes | audio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['id']}` | {r['about']} | `{r['spec']}` | `{r['voice']}` | {r['ok']} | "
                     f"{r['seconds'] / 60:.1f} min |")
    lines += [
        "",
        f"Total: {sum(r['ok'] for r in rows)} takes, {sum(r['seconds'] for r in rows) / 60:.1f} min, "
        f"{size_mb:.1f} MB.",
        "",
        "The two typical speakers are controls. The six atypical ones are moderate to severe on",
        "purpose: a model trained on typical synthetic voices should do badly on them, so that",
        "personalization has something to fix. Profiles are explained in `workbench simulate --list`",
        "and in the docstring of `workbench/simulate.py`; severities run from 0 to 1.",
        "",
        "## Regenerate",
        "",
        "```bash",
        "sudo apt-get install espeak-ng flite   # the engines used here",
        "python sample_data/make_sample_data.py",
        "```",
        "",
        "The script deletes and rebuilds only the simulated speaker folders listed in it, and",
        "rewrites this README. Output (audio, utterance ids, manifests) is deterministic for the",
        "same engine versions (espeak-ng 1.51, flite 2.2); only creation times differ.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the speaker folders (default: sample_data/)")
    parser.add_argument("--n", type=int, default=80, help="utterances per speaker (default 80)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = build(args.out, args.n)
    write_readme(args.out, rows, args.n)
    for r in rows:  # every folder opens cleanly
        SpeakerCorpus.open(args.out / r["id"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
