"""Build sample_data/real/: one REAL typical speaker (Asterisk prompts, CC-BY-SA-3.0).

Usage::

    sudo apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-wav
    python sample_data/make_real_sample.py

Takes 40 of the prompts that are 1-5 s long and at least two words (every
``len // 40``-th in name order, so the choice is fixed), and writes them into
``sample_data/real/real-allison/`` as a normal speaker folder (``simulated: false``)
plus ``sample_data/real/README.md`` with the credit the license asks for.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from workbench.corpus import SpeakerCorpus  # noqa: E402
from workbench.real_speech import ASTERISK_LICENSE, load_asterisk  # noqa: E402

SPEAKER_ID = "real-allison"
N_TAKES = 40


def main() -> int:
    out = HERE / "real"
    candidates = [u for u in load_asterisk(min_s=1.0, max_s=5.0) if len(u.text.split()) >= 2]
    step = max(1, len(candidates) // N_TAKES)
    chosen = candidates[::step][:N_TAKES]
    folder = out / SPEAKER_ID
    if folder.exists():
        shutil.rmtree(folder)
    corpus = SpeakerCorpus.create(
        out, SPEAKER_ID, display_name="Real typical speaker (Asterisk prompts, Allison Smith)",
        notes=f"REAL human speech, typical (not atypical). {ASTERISK_LICENSE}. 8 kHz telephone recordings "
              "resampled to 16 kHz.",
        prompts=[u.text for u in chosen], simulated=False,
        profile={"source": "asterisk-core-sounds-en", "license": "CC-BY-SA-3.0", "credit": ASTERISK_LICENSE})
    for i, u in enumerate(chosen, start=1):
        corpus.add_take(u.wav, prompt=u.text, transcript=u.text, sample_rate=16_000, utt_id=f"{i:05d}-{u.name.replace('/', '_')}"[:64],
                        extra={"source_file": f"{u.name}.wav", "license": "CC-BY-SA-3.0"})
    seconds = sum(u.duration_s for u in corpus.utterances())
    (out / "README.md").write_text("\n".join([
        "# Sample data: a real speaker",
        "",
        f"`{SPEAKER_ID}/` holds {len(chosen)} **real human recordings** ({seconds / 60:.1f} min) of one typical",
        "speaker reading telephone-system prompts, so that the demo, the notebooks and the app can show",
        "a real voice next to the simulated ones. The speaker is typical: this is not clinical data.",
        "",
        f"Credit and license: {ASTERISK_LICENSE}. The recordings are 8 kHz telephone audio",
        "resampled to 16 kHz FLAC; the texts are the packages' transcripts. They are shared under",
        "the same license (CC-BY-SA-3.0, https://creativecommons.org/licenses/by-sa/3.0/).",
        "",
        "Regenerate: `python sample_data/make_real_sample.py` (needs the two Debian packages).",
        "",
    ]), encoding="utf-8")
    print(f"wrote {folder}: {len(chosen)} takes, {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
