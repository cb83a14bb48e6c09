"""Speaker embeddings: the three sources, caching, projections, nearest speakers, plots and the explorer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._models import noise_waves, tiny_backend
from tests.conftest import make_speechlike
from workbench import embeddings as E
from workbench._optional import has_module
from workbench.embeddings import cache as embed_cache
from workbench.embeddings import dvector as dv
from workbench.errors import MissingDependencyError

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"

_REQUIRE = os.environ.get("WORKBENCH_REQUIRE_EMBED") == "1"
needs_resemblyzer = pytest.mark.skipif(
    not has_module("resemblyzer") and not _REQUIRE,
    reason="d-vectors need resemblyzer's pretrained weights (pip install 'workbench[embed]'); "
           "set WORKBENCH_REQUIRE_EMBED=1 to make this a failure",
)
needs_mpl = pytest.mark.skipif(not has_module("matplotlib"), reason="plots need matplotlib (workbench[ui])")
needs_ui = pytest.mark.skipif(not (has_module("ipywidgets") and has_module("anywidget")),
                              reason="the explorer needs ipywidgets and anywidget (workbench[ui])")


@pytest.fixture(scope="module")
def backend():
    return tiny_backend(seed=0)


def _clusters(n_speakers: int = 4, per: int = 10, dim: int = 8, spread: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_speakers, dim))
    x = np.concatenate([c + spread * rng.standard_normal((per, dim)) for c in centers])
    labels = [f"s{i}" for i in range(n_speakers) for _ in range(per)]
    return x.astype(np.float32), labels


def _table(x, labels, profiles=None) -> E.UtteranceEmbeddings:
    n = len(x)
    profiles = profiles or ["typical" if s in ("s0", "s1") else "stutter" for s in labels]
    return E.UtteranceEmbeddings(x, list(labels), [f"u{i}" for i in range(n)], [f"text {i}" for i in range(n)],
                                 profiles, [f"2026-01-0{1 + i % 3}" for i in range(n)], [None] * n, "dvector")


# --------------------------------------------------------------------------- import hygiene


def test_core_import_pulls_no_optional_package() -> None:
    script = textwrap.dedent("""
        import importlib.abc, json, sys
        BLOCKED = {"sklearn", "resemblyzer", "umap", "matplotlib", "webrtcvad", "ipywidgets", "anywidget"}
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(name + " is blocked")
        sys.meta_path.insert(0, Blocker())
        import workbench.embeddings as E
        E.fit_projection([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], "pca")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_all_is_sorted() -> None:
    assert E.__all__ == sorted(E.__all__)


# --------------------------------------------------------------------------- d-vectors


def test_partial_slices_follow_resemblyzer() -> None:
    assert dv._partial_starts(16_000) == [0]  # 1 s: one (zero-padded) partial
    # 5 s: 501 frames; starts every 77 frames; the 6th would cover only 72 % -> dropped
    assert dv._partial_starts(80_000) == [0, 77, 154, 231, 308]


def test_missing_resemblyzer_says_what_to_install(monkeypatch) -> None:
    real = dv.importlib.util.find_spec
    monkeypatch.setattr(dv.importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    dv._dvector_model.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r"pip install 'workbench\[embed\]'"):
            E.embed_utterances(noise_waves(1), "dvector")
    finally:
        dv._dvector_model.cache_clear()


@needs_resemblyzer
def test_dvectors_are_unit_vectors_and_batch_equals_items() -> None:
    waves = [make_speechlike(s, seed=i) for i, s in enumerate((0.6, 1.7, 3.9))]
    batch = E.embed_utterances(waves, "dvector", threads=1)  # 1 thread: fastest on a busy 2-core machine
    assert batch.shape == (3, E.DVECTOR_DIM) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    items = np.concatenate([E.embed_utterances([w], "dvector", threads=1) for w in waves])
    np.testing.assert_allclose(batch, items, atol=1e-5)
    # other sample rates are resampled, not refused
    import librosa

    w8k = librosa.resample(waves[1], orig_sr=16_000, target_sr=8_000)
    again = E.embed_utterances([w8k], "dvector", sample_rate=8_000, threads=1)
    assert float(again[0] @ batch[1]) > 0.95


@needs_resemblyzer
def test_dvectors_identify_sample_data_speakers() -> None:
    table = E.embed_corpora(SAMPLE_DATA, "dvector", cache=False, max_per_speaker=12, seed=0, threads=1)
    assert len(table.speakers) == 8 and len(table) == 96
    result = E.speaker_id_accuracy(table)
    assert result.accuracy >= 0.90, result.per_speaker
    assert result.confusion.sum() == len(table)


# --------------------------------------------------------------------------- encoder pooling


def test_encoder_pooling_uses_true_frames_only(backend) -> None:
    waves = noise_waves(4, seed=1)
    batch = E.embed_utterances(waves, "encoder", backend=backend, batch_size=4)
    assert batch.shape == (4, 2 * backend.hidden_size)
    items = np.concatenate([E.embed_utterances([w], "encoder", backend=backend) for w in waves])
    np.testing.assert_allclose(batch, items, atol=1e-4)  # padding in a batch changes nothing
    first = E.embed_utterances(waves, "encoder", backend=backend, layer=0)
    assert not np.allclose(first, batch)
    assert np.all(batch[:, backend.hidden_size:] >= 0)  # std half


def test_encoder_errors_are_actionable(backend) -> None:
    with pytest.raises(E.EmbeddingError, match="pass backend"):
        E.embed_utterances(noise_waves(1), "encoder")
    with pytest.raises(E.EmbeddingError, match="layer 7 does not exist"):
        E.embed_utterances(noise_waves(1), "encoder", backend=backend, layer=7)
    with pytest.raises(E.EmbeddingError, match="learned_speaker_vectors"):
        E.embed_utterances(noise_waves(1), "learned")
    with pytest.raises(E.EmbeddingError, match="unknown embedding source"):
        E.embed_utterances(noise_waves(1), "xvector")


def test_long_recordings_are_pooled_over_pieces(backend) -> None:
    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(16_000 * 33)).astype(np.float32)  # > 30 s: featurize() would refuse it
    v = E.embed_utterances([long], "encoder", backend=backend)
    assert v.shape == (1, 2 * backend.hidden_size) and np.isfinite(v).all()


# --------------------------------------------------------------------------- speaker folders and the cache


@pytest.fixture
def two_speakers(tmp_path):
    from workbench.corpus import SpeakerCorpus

    out = []
    for k, (sid, prof) in enumerate((("spk-a", "typical"), ("spk-b", "stutter"))):
        c = SpeakerCorpus.create(tmp_path / "speakers", sid, prompts=["one", "two", "three"],
                                 simulated=True, profile={"profile_spec": prof})
        for i in range(3):
            c.add_take(make_speechlike(1.0 + 0.2 * i, seed=10 * k + i), prompt=["one", "two", "three"][i])
        out.append(c)
    return tmp_path / "speakers"


def test_corpus_embeddings_are_cached_and_corrupt_caches_recomputed(two_speakers, backend, monkeypatch) -> None:
    table = E.embed_corpora(two_speakers, "encoder", backend=backend)
    assert table.speakers == ["spk-a", "spk-b"] and len(table) == 6
    assert table.profiles[0] == "typical" and table.profiles[-1] == "stutter"
    assert table.texts[:3] == ["one", "two", "three"]
    files = sorted(two_speakers.glob("*/embeddings/*.npz"))
    assert [f.name for f in files] == [f"encoder-L2-{backend.fingerprint()[:12]}.npz"] * 2

    calls = []
    real = E.embed_utterances
    monkeypatch.setattr(embed_cache, "embed_utterances", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    again = E.embed_corpora(two_speakers, "encoder", backend=backend)
    assert calls == []  # everything came from the cache
    np.testing.assert_array_equal(again.vectors, table.vectors)

    files[0].write_bytes(b"not a zip file")  # damaged cache: recomputed and rewritten
    fixed = E.embed_corpora(two_speakers, "encoder", backend=backend)
    assert calls == [3]
    np.testing.assert_allclose(fixed.vectors, table.vectors, atol=1e-6)
    with np.load(files[0]) as z:
        assert len(z["hashes"]) == 3

    other = tiny_backend(seed=1)  # other weights: another cache file, never the old vectors
    E.embed_corpora(two_speakers, "encoder", backend=other)
    assert len(list(two_speakers.glob("spk-a/embeddings/*.npz"))) == 2


def test_cache_folder_elsewhere_and_no_cache(two_speakers, backend, tmp_path) -> None:
    E.embed_corpora(two_speakers, "encoder", backend=backend, cache=tmp_path / "cache", layer=0)
    assert len(list((tmp_path / "cache").glob("*/encoder-L0-*.npz"))) == 2
    E.embed_corpora(two_speakers / "spk-a", "encoder", backend=backend, cache=False)
    assert not list(two_speakers.glob("*/embeddings"))


def test_speaker_and_session_embeddings() -> None:
    x, labels = _clusters()
    ids, s = E.speaker_embeddings(x, labels)
    assert ids == ["s0", "s1", "s2", "s3"] and s.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-6)
    sessions, v = E.session_embeddings(_table(x, labels), "s2")
    assert sessions == ["2026-01-01", "2026-01-02", "2026-01-03"] and v.shape == (3, 8)
    with pytest.raises(E.EmbeddingError, match="not in these embeddings"):
        E.session_embeddings(_table(x, labels), "nobody")
    z = _table(x + 100.0, labels).standardized()  # a common offset hides speakers from cosine distances
    np.testing.assert_allclose(z.vectors.mean(0), 0.0, atol=1e-5)
    assert z.speaker_ids == labels and E.speaker_id_accuracy(z).accuracy == 1.0


# --------------------------------------------------------------------------- checks


def test_speaker_id_accuracy() -> None:
    x, labels = _clusters()
    r = E.speaker_id_accuracy(x, labels)
    assert r.accuracy == 1.0 and set(r.per_speaker.values()) == {1.0}
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((200, 16))
    chance = E.speaker_id_accuracy(noise, [f"s{i % 4}" for i in range(200)], seed=3).accuracy
    assert chance < 0.45
    assert E.speaker_id_accuracy(x, labels, seed=1).accuracy == E.speaker_id_accuracy(x, labels, seed=1).accuracy
    with pytest.raises(E.EmbeddingError, match="at least 2 utterances"):
        E.speaker_id_accuracy(x[:11], labels[:11])


def test_profile_separation() -> None:
    # two typical speakers near +x, two stutter speakers near +y: the profile holds together
    x = np.array([[1, 0.1, 0], [1, -0.1, 0], [0.1, 1, 0], [-0.1, 1, 0.1]], dtype=float)
    rows = E.profile_separation((["t1", "t2", "a1", "a2"], x),
                                {"t1": "typical", "t2": "typical", "a1": "stutter", "a2": "stutter"})
    assert len(rows) == 1 and rows[0].profile == "stutter" and rows[0].closer
    assert rows[0].within < 0.05 and rows[0].to_typical > 0.8
    with pytest.raises(E.EmbeddingError, match="no speaker has the profile"):
        E.profile_separation((["a1", "a2"], x[2:]), {"a1": "stutter", "a2": "stutter"})


# --------------------------------------------------------------------------- nearest speakers and warm starts


def test_nearest_speakers_forms_and_errors() -> None:
    x, labels = _clusters()
    ids, s = E.speaker_embeddings(x, labels)
    query = x[labels.index("s2")]
    near = E.nearest_speakers(query, (ids, s), k=2)
    assert near[0][0] == "s2" and near[0][1] < near[1][1] and len(near) == 2
    assert E.nearest_speakers(query, dict(zip(ids, s, strict=True)), k=1)[0][0] == "s2"
    assert E.nearest_speakers(query, _table(x, labels), k=1)[0][0] == "s2"
    assert E.nearest_speakers(query, (ids, s), k=3, exclude=["s2"])[0][0] != "s2"
    with pytest.raises(E.EmbeddingError, match="same source"):
        E.nearest_speakers(np.ones(3), (ids, s))


@pytest.fixture
def hra_bank(backend):
    from workbench.adapters import HRAConfig, SubmodelBank

    bank = SubmodelBank(backend, HRAConfig(space="embedding", embed_dim=4), ["s0", "s1", "s2", "s3"])
    with torch.no_grad():
        bank.adapted.adapters["hra"].z.copy_(torch.arange(16, dtype=torch.float32).reshape(4, 4))
    yield bank
    bank.adapted.remove()


def test_learned_vectors_and_warm_start(hra_bank, backend, tmp_path) -> None:
    ids, z = E.learned_speaker_vectors(hra_bank)
    assert ids == ["s0", "s1", "s2", "s3"] and z.shape == (4, 4)
    path = hra_bank.save(tmp_path / "bank.safetensors")
    ids2, z2 = E.learned_speaker_vectors(path)
    assert ids2 == ids
    np.testing.assert_array_equal(z, z2)

    x, labels = _clusters()
    ref = E.speaker_embeddings(x, labels)
    np.testing.assert_allclose(E.warm_start_z(None, ref, hra_bank), z.mean(0))
    np.testing.assert_allclose(E.warm_start_z(x[0], ref, (ids, z), k=0), z.mean(0))
    # a new speaker who sounds like s2: its start is (mostly) s2's z
    near = E.warm_start_z(ref[1][2], ref, path, k=2)
    assert np.abs(near - z[2]).max() < 1e-3
    mixed = E.warm_start_z(x[labels.index("s1")], ref, (ids, z), k=4)
    assert np.all(mixed >= z.min(0) - 1e-6) and np.all(mixed <= z.max(0) + 1e-6)  # a convex combination
    with pytest.raises(E.EmbeddingError, match="none of the reference speakers"):
        E.warm_start_z(x[0], {"zz": x[0]}, (ids, z))

    from workbench.adapters import warm_start

    fresh = tiny_backend(seed=0)  # same weights, no adapters injected yet
    adapted = warm_start(fresh, path, z=near)  # the result is what the adapters' warm start takes
    np.testing.assert_allclose(adapted.adapters["hra"].z.detach().numpy()[0], near, atol=1e-6)
    adapted.remove()


def test_learned_vectors_need_an_embedding_space(backend, tmp_path) -> None:
    from workbench.adapters import ResidualConfig, SubmodelBank

    bank = SubmodelBank(backend, ResidualConfig(), ["a", "b"])
    try:
        with pytest.raises(E.EmbeddingError, match="space='embedding'"):
            E.learned_speaker_vectors(bank)
        path = bank.save(tmp_path / "res.safetensors")
        with pytest.raises(E.EmbeddingError, match="without a learned speaker space"):
            E.learned_speaker_vectors(path)
    finally:
        bank.adapted.remove()


# --------------------------------------------------------------------------- projections


def test_pca_projection_places_new_points() -> None:
    x, _ = _clusters(dim=12)
    p = E.fit_projection(x, "pca", dim=3)
    assert p.points.shape == (40, 3)
    np.testing.assert_allclose(p.transform(x), p.points, atol=1e-9)
    assert 0 < p.explained_variance_ratio.sum() <= 1 + 1e-9
    assert np.all(np.diff(p.explained_variance_ratio) <= 1e-12)
    again = E.fit_projection(x, "pca", dim=3)
    np.testing.assert_array_equal(again.points, p.points)  # deterministic signs
    s = E.fit_projection(x, "pca", standardize=True)
    np.testing.assert_allclose(s.transform(x[:3]), s.points[:3], atol=1e-9)
    with pytest.raises(E.EmbeddingError, match="fitted on 12-D"):
        p.transform(np.ones((1, 5)))
    with pytest.raises(E.EmbeddingError, match="dim must be 2 or 3"):
        E.fit_projection(x, "pca", dim=4)


@pytest.mark.skipif(not has_module("sklearn"), reason="t-SNE needs scikit-learn (workbench[embed])")
def test_tsne_refits_only() -> None:
    x, _ = _clusters(per=6)
    p = E.fit_projection(x, "tsne", seed=0, threads=1)  # 1 thread: 40x faster than 2 on a busy 2-core machine
    assert p.points.shape == (24, 2)
    np.testing.assert_allclose(E.fit_projection(x, "tsne", seed=0, threads=1).points, p.points)
    with pytest.raises(E.EmbeddingError, match="t-SNE cannot place new points; refit"):
        p.transform(x[:2])


def test_umap_is_optional() -> None:
    x, _ = _clusters(per=6)
    if has_module("umap"):
        p = E.fit_projection(x, "umap", seed=0, threads=1)
        assert p.transform(x[:2]).shape == (2, 2)
    else:
        with pytest.raises(MissingDependencyError, match="pip install umap-learn"):
            E.fit_projection(x, "umap")


# --------------------------------------------------------------------------- plots


@needs_mpl
def test_plots_return_figures() -> None:
    from matplotlib.figure import Figure

    from workbench import plots

    x, labels = _clusters()
    table = _table(x, labels)
    proj = E.fit_projection(x, "pca")
    fig = plots.plot_embedding_scatter(proj.points, labels, profiles=table.profiles, highlight="s1")
    assert isinstance(fig, Figure)
    fig3 = plots.plot_embedding_scatter(E.fit_projection(x, "pca", dim=3).points, labels,
                                        profiles=table.speaker_profiles(), color_by="profile")
    assert fig3.axes[0].name == "3d"
    assert isinstance(plots.plot_embedding_map(table, highlight="s0"), Figure)
    sessions, v = E.session_embeddings(table, "s0")
    traj = plots.plot_speaker_trajectory(proj.transform(v), sessions, background=proj.points, speaker="s0")
    assert isinstance(traj, Figure)
    ids, s = E.speaker_embeddings(table)
    ax = Figure().add_subplot(1, 1, 1)
    assert plots.plot_similarity_heatmap(ids, s, ax=ax) is ax.figure
    near = E.nearest_speakers(s[0], (ids, s), k=3, exclude=["s0"])
    assert isinstance(plots.plot_nearest_speakers(near, query="s0", profiles=table.speaker_profiles()), Figure)
    with pytest.raises(ValueError, match="not in this map"):
        plots.plot_embedding_scatter(proj.points, labels, highlight="nobody")


# --------------------------------------------------------------------------- the explorer


@needs_mpl
def test_explorer_logic() -> None:
    from workbench.ui.embeddings import EmbeddingExplorer

    x, labels = _clusters()
    ex = EmbeddingExplorer(_table(x, labels))
    assert ex.hover(5)["text"] == "text 5" and ex.hovered == 5
    assert ex.hover(None) is None and ex.hovered is None
    i = ex.nearest_point(*ex.points[7])
    assert i == 7
    ex.select("s3")
    assert sum(not f for f in ex.faded()) == 10
    assert [s for s, _ in ex.nearest(2)] != [] and "s3" not in [s for s, _ in ex.nearest(3)]
    data = ex.scatter_data()
    assert np.min(data["points"]) >= 0 and np.max(data["points"]) <= 1
    assert set(data["shapes"]) == {"circle", "triangle"}
    with pytest.raises(E.EmbeddingError, match="not in this map"):
        ex.select("nobody")
    with pytest.raises(E.EmbeddingError, match="no utterance 99"):
        ex.hover(99)
    assert ex.figure() is not None


@needs_ui
@needs_mpl
def test_explorer_widget_reacts_to_page_messages(two_speakers, backend) -> None:
    from workbench.ui.embeddings import EmbeddingExplorer

    table = E.embed_corpora(two_speakers, "encoder", backend=backend, cache=False)
    box = EmbeddingExplorer(table).widget()
    box.scatter.handle_message({"type": "hover", "index": 4})
    assert "spk-b" in box.text.value and "two" in box.text.value
    box.scatter.handle_message({"type": "click", "index": 1})
    assert box.player.value[:4] == b"RIFF"
    box.scatter.handle_message({"type": "hover", "index": 999})  # stale page: ignored
    box.menu.value = "spk-a"
    assert box.scatter.faded == [False] * 3 + [True] * 3
    assert "spk-b" in box.near.value


# --------------------------------------------------------------------------- the explorer's page code, in Chromium

_PAGE = """<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,"><div id="root"></div>
<script type="module">
  import widget from "./scatter.js";
  const state = %s;
  const handlers = {}, sent = [];
  const model = {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; for (const cb of handlers[`change:${k}`] || []) cb(); },
    save_changes: () => {}, on: (n, cb) => { (handlers[n] ||= []).push(cb); }, off: () => {},
    send: (content) => sent.push(JSON.parse(JSON.stringify(content))),
  };
  window.wb = { sent, model };
  widget.render({ model, el: document.getElementById("root") });
  window.wb.ready = true;
</script>
"""


@pytest.mark.browser
@needs_mpl
def test_scatter_page_sends_hover_and_click(tmp_path) -> None:
    import functools
    import http.server
    import threading

    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists() or not has_module("playwright") or not has_module("anywidget"):
        if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail("needs /usr/bin/chromium, playwright and anywidget (WORKBENCH_REQUIRE_BROWSER=1)")
        pytest.skip("needs /usr/bin/chromium, playwright and anywidget")
    from playwright.sync_api import sync_playwright

    from workbench.ui.embeddings import _ESM, EmbeddingExplorer, _scatter_class

    x, labels = _clusters(per=3)
    data = EmbeddingExplorer(_table(x, labels)).scatter_data()
    (tmp_path / "scatter.js").write_text(_ESM)
    (tmp_path / "index.html").write_text(_PAGE % json.dumps({**data, "width": 400, "height": 300}))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            p = browser.new_page()
            errors: list[str] = []
            p.on("pageerror", lambda exc: errors.append(str(exc)))
            p.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            p.wait_for_function("window.wb && window.wb.ready", timeout=10_000)
            assert p.locator("svg [data-index]").count() == len(labels)
            assert p.locator("svg polygon").count() == 6  # the two atypical speakers are triangles
            p.hover("svg [data-index='4']")
            p.click("svg [data-index='7']")
            p.wait_for_function("window.wb.sent.some((m) => m.type === 'click')", timeout=5_000)
            sent = p.evaluate("window.wb.sent")
            p.evaluate("window.wb.model.set('faded', window.wb.model.get('faded').map((_, i) => i > 2))")
            opacity = p.get_attribute("svg [data-index='5']", "fill-opacity")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert errors == []
    assert {"type": "hover", "index": 4} in sent and sent[-1] == {"type": "click", "index": 7}
    assert float(opacity) < 0.5
    got = []
    scatter = _scatter_class()(**data)
    scatter.on_event(got.append)
    for m in sent:
        scatter.handle_message(m)
    assert got[-1] == {"type": "click", "index": 7}
