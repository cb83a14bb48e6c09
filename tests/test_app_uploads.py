"""The app's upload component without a browser: what the page sends, piece by piece, and the size limits.

What only the browser shows (the refusal before anything is sent, the session
surviving it) is in ``tests/browser/test_browser_uploads.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

pn = pytest.importorskip("panel")

from workbench.app_pages.common import AppContext  # noqa: E402
from workbench.app_pages.shell import WorkbenchApp  # noqa: E402
from workbench.app_pages.upload_input import FileUpload, size_problem  # noqa: E402
from workbench.corpus import SpeakerCorpus  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "sim-accent"


def _send(up: FileUpload, files: list[tuple[str, bytes]], *, chunk: int = 1000, upload: str = "u1",
          tamper: int = 0) -> list[dict]:
    """What the page sends for ``files``; returns the server's answers (acknowledgements)."""
    sent: list[dict] = []
    up._send_msg = sent.append
    up._handle_msg({"type": "begin", "upload": upload, "names": [n for n, _ in files],
                    "sizes": [len(c) for _, c in files]})
    for i, (_, content) in enumerate(files):
        content = content + b"x" * tamper
        for seq, off in enumerate(range(0, len(content), chunk)):
            up._handle_msg({"type": "chunk", "upload": upload, "file": i, "seq": seq,
                            "data": base64.b64encode(content[off:off + chunk]).decode()})
    up._handle_msg({"type": "end", "upload": upload})
    return sent


def _component() -> tuple[FileUpload, list, list]:
    up = FileUpload(label="Files", multiple=True, max_file_bytes=10_000, max_total_bytes=15_000)
    got: list = []
    refused: list[str] = []
    up.on_files(got.append)
    up.on_refused(refused.append)
    return up, got, refused


def test_pieces_are_put_back_together_and_acknowledged() -> None:
    up, got, refused = _component()
    files = [("a.wav", bytes(range(256)) * 20), ("b.txt", b"a hello there\n"), ("empty.wav", b"")]
    acks = _send(up, files, chunk=700)
    assert got == [files] and not refused
    assert [a["received"] for a in acks] == list(range(1, len(acks) + 1)) and len(acks) == 9


@pytest.mark.parametrize("case", ["one file too big", "too much together", "tampered sizes", "damaged piece",
                                  "refused by the page"])
def test_too_big_or_damaged_uploads_are_refused_with_a_message(case) -> None:
    up, got, refused = _component()
    if case == "one file too big":
        _send(up, [("long.wav", b"x" * 10_001)])
        assert "long.wav is 0.0 MB; one file can be at most 0.0 MB" in refused[0]
    elif case == "too much together":
        _send(up, [("a.wav", b"x" * 8000), ("b.wav", b"x" * 8000)])
        assert "These 2 files are" in refused[0] and "smaller groups" in refused[0]
    elif case == "tampered sizes":  # the page said 100 bytes and sends more
        _send(up, [("a.wav", b"x" * 100)], tamper=50)
        assert "larger than the page said" in refused[0]
    elif case == "damaged piece":
        up._handle_msg({"type": "begin", "upload": "u", "names": ["a.wav"], "sizes": [4]})
        up._handle_msg({"type": "chunk", "upload": "u", "file": 0, "seq": 0, "data": "%%%"})
        up._handle_msg({"type": "end", "upload": "u"})
        assert "damaged" in refused[0]
    else:  # the page checked the sizes itself: only names and sizes arrived
        up._handle_msg({"type": "refused", "upload": "u", "names": ["huge.wav"], "sizes": [3 * 1024 ** 3]})
        assert "huge.wav is 3072.0 MB" in refused[0] and "Nothing was uploaded" in refused[0]
    assert not got and len(refused) == 1
    assert up._pending is None
    # the next upload works
    ok = [("fine.wav", b"y" * 500)]
    _send(up, ok, upload="next")
    assert got == [ok]


def test_size_problem_names_the_file_and_the_limit() -> None:
    assert size_problem(["a.wav"], [10], max_file=10, max_total=10) is None
    text = size_problem(["../../x/take.wav"], [150 * 1024 * 1024])
    assert text.startswith("take.wav is 150.0 MB; one file can be at most 100.0 MB") and "../" not in text


@pytest.fixture
def app(tmp_path) -> WorkbenchApp:
    (tmp_path / "data").mkdir()
    app = WorkbenchApp(AppContext(data_dir=tmp_path / "data"))
    page = app.pages["Speakers"]
    page.new_id.value, page.consent_id.value, page.n_prompts.value = "spk-001", "consent-1", 5
    assert page.create() == "spk-001"
    return app


def test_a_refused_upload_on_the_record_page_says_why_and_the_next_take_is_saved(app, tmp_path) -> None:
    page = app.pages["Record"]
    page.upload_one._handle_msg({"type": "refused", "upload": "u", "names": ["all-day.wav"],
                                 "sizes": [700 * 1024 * 1024]})
    assert "all-day.wav is 700.0 MB" in page.message.object and "role='alert'" in page.message.object
    take = (SAMPLE / "audio" / "00001-4cccfd.flac").read_bytes()
    _send(page.upload_one, [("take.flac", take)], chunk=50_000)
    corpus = SpeakerCorpus.open(tmp_path / "data" / "spk-001")
    assert corpus.summary()["n_ok"] == 1 and "1 of 5 recorded" in page.progress_text.object
    # many files: over the limit together
    page.upload_many._handle_msg({"type": "refused", "upload": "v", "names": [f"{i}.wav" for i in range(5)],
                                  "sizes": [90 * 1024 * 1024] * 5})
    assert "These 5 files are 450.0 MB together" in page.upload_message.object
    lines = [json.loads(x) for x in (SAMPLE / "manifest.jsonl").read_text().splitlines() if x.strip()][1:3]
    files = [(Path(u["audio_path"]).name, (SAMPLE / u["audio_path"]).read_bytes()) for u in lines]
    files.append(("t.txt", "".join(f"{Path(u['audio_path']).stem} {u['transcript']}\n" for u in lines).encode()))
    _send(page.upload_many, files, chunk=40_000)
    assert "Added 2 recordings" in page.upload_message.object


def test_results_page_refuses_a_big_phrase_upload(app) -> None:
    results = app.pages["Results"]
    results.load()
    results.try_upload._handle_msg({"type": "refused", "upload": "u", "names": ["x.wav"], "sizes": [2 ** 31]})
    assert "x.wav is 2048.0 MB" in results.try_answer.object
