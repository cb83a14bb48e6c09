"""``workbench record``: read prompts aloud in a terminal, with the kernel's microphone.

The same :class:`~workbench.ui.session.PromptSession` as the notebook widget, so
each take is saved into the speaker folder the moment it is recorded. Keys:
Enter to start and stop; then ``k`` keep and go on, ``r`` record again, ``s``
skip, ``p`` play, ``q`` quit (everything kept so far is already saved).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["record_in_terminal"]


def record_in_terminal(speaker_dir: str | Path, *, consent_id: str, prompts: list[str] | None = None,
                       create: bool = False, device: int | str | None = None,
                       ask: Callable[[str], str] = input, say: Callable[[str], None] = print,
                       recorder: Any = None) -> int:
    """Run a prompt session in the terminal; returns the number of takes kept.

    Args:
        speaker_dir: the speaker folder (created with ``create=True``; its name is the speaker id).
        consent_id: the consent under which this session records (asked once, stored).
        prompts: prompt list for a new speaker (default: the shipped everyday list).
        device: microphone index or name (default: the system's default input).
        ask, say, recorder: injectable for tests (no microphone or keyboard needed).
    """
    from workbench.corpus import SpeakerCorpus
    from workbench.prompts import load_prompts
    from workbench.ui.kernel_recorder import KernelRecorder
    from workbench.ui.session import PromptSession

    path = Path(speaker_dir)
    if create and not (path / "speaker.json").is_file():
        corpus = SpeakerCorpus.create(path.parent, path.name, prompts=prompts or load_prompts("everyday"))
    else:
        corpus = SpeakerCorpus.open(path)
    session = PromptSession(corpus, consent_id=consent_id)
    mic = recorder or KernelRecorder(device)
    kept = 0
    say(f"Recording {corpus.speaker_id}: {session.progress_text}. Press Ctrl+C at any time; kept takes are saved.")
    while not session.finished:
        say(f"\n[{session.index + 1}/{session.n_prompts}] Please say:\n    {session.prompt}\n")
        ask("Press Enter to start recording... ")
        mic.start()
        ask("Recording. Press Enter to stop. ")
        take = mic.stop()
        say(mic.message)
        while True:
            choice = ask("[k]eep  [r]ecord again  [p]lay  [s]kip  [q]uit > ").strip().lower()[:1] or "k"
            if choice == "p":
                mic.play(take)
                continue
            break
        if choice == "q":
            mic.redo()
            break
        if choice == "s":
            mic.redo()
            session.skip()
            continue
        if choice == "r":
            mic.redo()
            continue
        mic.redo()
        utt = session.record(take)
        say(session.message)
        if utt.status == "ok":
            kept += 1
            session.next()
    say(f"\n{session.progress_text}. Takes are in {corpus.root}.")
    return kept
