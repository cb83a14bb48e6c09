"""Untrusted Submodel files: the metadata is checked before anything is allocated.

Anyone can edit a safetensors file's metadata. A file whose settings say
``rank = 1000000`` while its weights have rank 8 once made ``workbench transcribe``
allocate ~20 GB. These tests craft such files (and fuzz every metadata field) and
require a plain :class:`AdapterError`, fast, with bounded memory: every test here
runs under an address-space limit a few GB above the process's current size, so a
regression fails with an allocation error instead of taking the machine down.
"""

from __future__ import annotations

import contextlib
import json
import resource
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.adapters import (
    ConvAdapterConfig,
    HRAConfig,
    LoRAConfig,
    ResidualConfig,
    SubmodelBank,
    VectorConfig,
    inject,
    load_submodel,
)
from workbench.adapters.io import read_submodel
from workbench.errors import AdapterError

from _models import noise_waves, tiny_backend

HEADROOM = 3 << 30  # bytes of address space a test may add (a regression asks for ~20 GB)
RSS_GROWTH_MB = 400  # peak resident memory a test may add


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")  # pragma: no cover


@contextlib.contextmanager
def bounded_memory():
    """Fail (MemoryError/RuntimeError) instead of swapping if the block asks for gigabytes;
    also check the peak RSS growth afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024
    assert grown < RSS_GROWTH_MB, f"peak RSS grew by {grown:.0f} MB"


@pytest.fixture(scope="module")
def backend():
    return tiny_backend()


CONFIGS = {
    "lora": LoRAConfig(rank=2),
    "residual": ResidualConfig(bottleneck=4),
    "conv": ConvAdapterConfig(groups=4),
    "hra": HRAConfig(controller_dim=4, head="ffn", ffn_hidden=4),
    "hra-embedding": HRAConfig(controller_dim=4, space="embedding", embed_dim=3),
    "vector-ia3": VectorConfig(),
    "vector-flora": VectorConfig(mode="flora", top_layers=2),
}


def _real_file(backend, config, path: Path, ids=("spk-a",)) -> Path:
    adapted = inject(backend, config.replace(num_speakers=len(ids)))
    try:
        return adapted.save(path, speaker_ids=list(ids))
    finally:
        adapted.remove()


def _raw(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        return load_file(str(path)), dict(f.metadata())


def _rewrite(path: Path, tensors: dict, raw: dict, out: Path) -> Path:
    """The same tensors with edited metadata (what a hand-edited file looks like)."""
    from safetensors.torch import save_file

    save_file(tensors, str(out), metadata=raw)
    return out


def _with_config(raw: dict, **changes) -> dict:
    config = json.loads(raw["config"])
    config.update(changes)
    return {**raw, "config": json.dumps(config)}


# ---------------------------------------------------------------------------- the reported case


def test_rank_one_million_is_refused_before_allocating(backend, tmp_path) -> None:
    path = _real_file(backend, LoRAConfig(rank=2), tmp_path / "real.safetensors")
    tensors, raw = _raw(path)
    crafted = _rewrite(path, tensors, _with_config(raw, rank=1_000_000), tmp_path / "crafted.safetensors")
    with bounded_memory(), pytest.raises(AdapterError, match=r"rank.*1000000.*do not use it"):
        load_submodel(backend, crafted)
    assert backend._adapted is None or not backend._adapted._hooks  # nothing was injected


def test_cli_transcribe_with_a_crafted_rank_says_so_plainly(tmp_path, capsys) -> None:
    """The user's exact command: the shipped model, its default LoRA, the metadata edited to rank 1000000."""
    import numpy as np
    import soundfile as sf

    from workbench.cli import main
    from workbench.models import load_base_model

    shipped = load_base_model("tiny")
    path = _real_file(shipped, LoRAConfig(), tmp_path / "real.safetensors")
    tensors, raw = _raw(path)
    crafted = _rewrite(path, tensors, _with_config(raw, rank=1_000_000), tmp_path / "that.safetensors")
    wav = tmp_path / "x.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    with bounded_memory():
        rc = main(["transcribe", str(wav), "--model", "tiny", "--adapter", str(crafted)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "that.safetensors" in err and "rank" in err and "1000000" in err and "export the adapter again" in err


@pytest.mark.parametrize("changes, match", [
    ({"num_speakers": 3}, "3 speakers but the file names 1"),
    ({"num_speakers": 10**9}, "3 speakers|names 1|from 0 to"),
    ({"rank": 10**18}, "from 0 to 65536"),
    ({"rank": 4}, "do not match its stored weights"),
    ({"rank": -1}, "from 0 to"),
    ({"rank": "8"}, "whole number"),
    ({"alpha": float("nan")}, "finite"),
    ({"dropout": 7.0}, "dropout"),
    ({"targets": {"all": 1}}, "one of"),
    ({"top_layers": 50}, "top_layers"),
    ({"family": "residual"}, "settings say"),
    ({"bogus": 1}, "unknown lora adapter settings"),
])
def test_hostile_config_values_get_plain_errors(backend, tmp_path, changes, match) -> None:
    path = _real_file(backend, LoRAConfig(rank=2), tmp_path / "real.safetensors")
    tensors, raw = _raw(path)
    bad = _rewrite(path, tensors, _with_config(raw, **changes), tmp_path / "bad.safetensors")
    with bounded_memory(), pytest.raises(AdapterError, match=match):
        load_submodel(backend, bad)


@pytest.mark.parametrize("ids, match", [
    ('"spk-a"', "speaker ids are"),
    ("[]", "speaker ids are"),
    ("[1]", "speaker ids are"),
    ('["a", "b"]', "1 speakers but the file names 2"),
    ('["a", "a"]', "repeat"),
    pytest.param(json.dumps(["x"] * 200_001), "repeat|more than a bank", id="200001-ids"),
    pytest.param("[" * 100_000, "corrupt", id="deep-nesting"),
    pytest.param("1" * 5000, "corrupt", id="5000-digit-int"),
])
def test_hostile_speaker_ids_get_plain_errors(backend, tmp_path, ids, match) -> None:
    path = _real_file(backend, ResidualConfig(bottleneck=4), tmp_path / "real.safetensors")
    tensors, raw = _raw(path)
    bad = _rewrite(path, tensors, {**raw, "speaker_ids": ids}, tmp_path / "bad.safetensors")
    with bounded_memory(), pytest.raises(AdapterError, match=match):
        load_submodel(backend, bad)
    with pytest.raises(AdapterError, match=match):
        SubmodelBank.from_files(backend, [bad])


def test_non_finite_or_integer_weights_are_refused(backend, tmp_path) -> None:
    path = _real_file(backend, ResidualConfig(bottleneck=4), tmp_path / "real.safetensors")
    tensors, raw = _raw(path)
    key = sorted(tensors)[0]
    nan = _rewrite(path, {**tensors, key: torch.full_like(tensors[key], float("nan"))}, raw, tmp_path / "nan.safetensors")
    with pytest.raises(AdapterError, match="NaN or infinite"):
        load_submodel(backend, nan)
    ints = _rewrite(path, {**tensors, key: tensors[key].to(torch.int32)}, raw, tmp_path / "int.safetensors")
    with pytest.raises(AdapterError, match="int32"):
        load_submodel(backend, ints)


def test_bank_files_and_warm_start_check_the_layout_too(backend, tmp_path) -> None:
    from workbench.adapters import warm_start

    path = _real_file(backend, HRAConfig(controller_dim=4, space="embedding", embed_dim=3),
                      tmp_path / "bank.safetensors", ids=("a", "b"))
    tensors, raw = _raw(path)
    bad = _rewrite(path, tensors, _with_config(raw, embed_dim=60000), tmp_path / "bad.safetensors")
    with bounded_memory():
        with pytest.raises(AdapterError, match="do not match its stored weights"):
            warm_start(backend, bad)
        with pytest.raises(AdapterError, match="do not match its stored weights"):
            SubmodelBank.from_files(backend, [path, bad])
        bank = SubmodelBank.from_files(backend, [_real_file(backend, ResidualConfig(bottleneck=4),
                                                            tmp_path / "r.safetensors")])
        r_tensors, r_raw = _raw(tmp_path / "r.safetensors")
        other = _rewrite(path, r_tensors, {**_with_config(r_raw, bottleneck=40000), "speaker_ids": '["z"]'},
                         tmp_path / "r2.safetensors")
        with pytest.raises(AdapterError, match="bottleneck"):
            bank.add_speakers(other)
        bank.adapted.remove()


@pytest.mark.parametrize("changes, match", [
    ({"mode": "flora"}, "need weights it does not hold|do not match its stored weights"),
    ({"mode": "ia4"}, "one of"),
    ({"mode": ["ia3"]}, "one of"),
    ({"decoder": "yes"}, "true or false"),
    ({"top_layers": 2}, "need weights it does not hold"),
    ({"num_speakers": 2}, "2 speakers but the file names 1"),
    ({"rank": 8}, "unknown vector adapter settings"),
    ({"family": "lora"}, "settings say"),
])
def test_crafted_vector_metadata_is_refused(backend, tmp_path, changes, match) -> None:
    """The vector family's settings are checked against its stored vectors like every family's."""
    path = _real_file(backend, VectorConfig(), tmp_path / "real.safetensors")
    tensors, raw = _raw(path)
    bad = _rewrite(path, tensors, _with_config(raw, **changes), tmp_path / "bad.safetensors")
    with bounded_memory(), pytest.raises(AdapterError, match=match):
        load_submodel(backend, bad)
    with pytest.raises(AdapterError, match=match):
        SubmodelBank.from_files(backend, [bad])


def test_vector_bank_round_trips_row_by_row(backend, tmp_path) -> None:
    """A vector bank saved, exported speaker by speaker and stacked again serves the same outputs."""
    waves = noise_waves(2, seed=3)
    bank = SubmodelBank(backend, VectorConfig(mode="flora"), ["a", "b", "c"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bank.adapted.adapters.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    batch = backend.featurize(waves)
    with torch.no_grad(), bank.adapted.route([2, 0]):
        expected = backend.log_probs(batch)[0]
    paths = [bank.export_speaker(s, tmp_path / f"{s}.safetensors") for s in ("a", "b", "c")]
    whole = bank.save(tmp_path / "bank.safetensors")
    bank.adapted.remove()
    for source in (paths, [whole]):
        again = SubmodelBank.from_files(backend, source)
        try:
            assert again.speaker_ids == ["a", "b", "c"]
            with torch.no_grad(), again.adapted.route(again.index(["c", "a"])):
                assert torch.equal(backend.log_probs(batch)[0], expected)
        finally:
            again.adapted.remove()


# ---------------------------------------------------------------------------- fuzzing

_leaf = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, 4, 8, 65536, 65537, 10**6, 2**31, 2**63, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)
_hostile = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                        max_leaves=6)
_ids = st.one_of(_hostile, st.lists(st.text(max_size=6), max_size=4), st.just(["spk-a"]), st.just(["spk-a", "b"]))
_raw_text = st.one_of(st.text(max_size=20), st.just("1" * 5000), st.just("[" * 5000), st.just("NaN"))


@st.composite
def _edits(draw, config_keys: list[str]):
    """A list of metadata edits: ("config", key, value) | ("ids", value) | ("raw", field, text)."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["config", "config", "config", "ids", "raw"]))
        if kind == "config":
            key = draw(st.sampled_from(config_keys + ["num_speakers", "family", "extra"]))
            edits.append(("config", key, draw(_hostile)))
        elif kind == "ids":
            edits.append(("ids", draw(_ids)))
        else:
            field = draw(st.sampled_from(["config", "speaker_ids", "training", "metrics", "specaugment", "family",
                                          "base_model", "workbench_submodel"]))
            edits.append(("raw", field, draw(_raw_text)))
    return edits


def _apply(raw: dict, edits: list) -> dict:
    raw = dict(raw)
    for edit in edits:
        if edit[0] == "config":
            config = json.loads(raw["config"]) if raw["config"].startswith("{") else {}
            config[edit[1]] = edit[2]
            raw["config"] = json.dumps(config)
        elif edit[0] == "ids":
            raw["speaker_ids"] = json.dumps(edit[1])
        else:
            raw[edit[1]] = edit[2]
    return raw


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_fuzzed_metadata_never_allocates_or_crashes(backend, tmp_path, case) -> None:
    """Every metadata edit either loads (and then holds exactly the stored weights) or gives an AdapterError."""
    path = _real_file(backend, CONFIGS[case], tmp_path / "real.safetensors")
    tensors, raw = _raw(path)
    keys = sorted(k for k in json.loads(raw["config"]) if k != "family")
    out = tmp_path / "fuzzed.safetensors"

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_edits(keys))
    def check(edits) -> None:
        _rewrite(path, tensors, _apply(raw, edits), out)
        try:
            adapted, _ = load_submodel(backend, out)
        except AdapterError as err:
            assert str(err) and len(str(err)) < 1500
            return
        try:
            loaded = adapted.state_dict()
            assert loaded.keys() == tensors.keys()
            assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
        finally:
            adapted.remove()

    with bounded_memory():
        check()
    read_submodel(path)  # the original still reads
