"""Backbone.compile: compiled feature capture matches eager, shares the cache key, pads the
last partial batch instead of compiling again, and build_backbone reuses a frozen backbone."""

import functools

import pytest
import torch

from backbones.build import build_backbone

KW = dict(size="tiny", tokenizer="tiny", image_size=16, num_frames=5, reuse=False)
BLOCKS = [0, 2, 4]


def _video(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 5, 16, 16, 3), dtype=torch.uint8, generator=g)


def _compare(compiled, eager, tol):
    video, seeds = _video(3), torch.tensor([0, 1, 2])
    want = eager.features(video, 200, BLOCKS, seeds=seeds)
    got = compiled.features(video, 200, BLOCKS, seeds=seeds)
    partial = compiled.features(video[:2], 200, BLOCKS, seeds=seeds[:2])  # padded to 3
    for block in BLOCKS:
        torch.testing.assert_close(got[block], want[block], rtol=tol, atol=tol)
        torch.testing.assert_close(partial[block], want[block][:2], rtol=tol, atol=tol)
        assert partial[block].shape[0] == 2


def test_compile_is_not_part_of_the_fingerprint():
    eager = build_backbone(**KW)
    for mode in (True, "walt", "tokenizer", "all"):
        assert build_backbone(**KW, compile=mode).fingerprint == eager.fingerprint
    with pytest.raises(ValueError, match="compile="):
        build_backbone(**KW, compile="yes")


def _counting_compile(monkeypatch) -> list:
    """torch.compile with a backend that records each graph and runs it eagerly (seconds on CPU)."""
    compiles = []

    def counting_backend(gm, example_inputs):
        compiles.append(len(example_inputs))
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counting_backend))
    return compiles


@pytest.mark.parametrize("variant", ["video", "image"])
def test_compiled_path_pads_partial_batches(monkeypatch, variant):
    """Dynamo with the eager backend: the plumbing and the padding give eager's features (I-WALT
    on the clip route: the compiled call must pass `independent_frames` on)."""
    compiles = _counting_compile(monkeypatch)
    kw = {**KW, "variant": variant, "video_route": "clip"}
    compiled = build_backbone(**kw, compile="walt")
    _compare(compiled, build_backbone(**kw), tol=1e-5)
    assert compiled._padded_batch == {"walt": 3} and compiles


def test_compiled_path_compiles_once(monkeypatch):
    """The partial batch reuses the graph. (Deselected in the mutation run: mutmut's trampolines
    are graph breaks, so there every mutated function adds graphs.)"""
    compiles = _counting_compile(monkeypatch)
    _compare(build_backbone(**KW, compile="walt"), build_backbone(**KW), tol=1e-5)
    assert len(compiles) == 1, f"expected one graph, got {len(compiles)} (a recompile)"


@pytest.mark.slow
def test_inductor_compiled_features_match_eager():
    """Inductor on CPU (needs a C++ compiler): about 90 s on 2 cores, both parts compiled."""
    torch._dynamo.reset()
    _compare(build_backbone(**KW, compile=True), build_backbone(**KW), tol=1e-4)


def test_reuse_returns_the_same_frozen_backbone_until_it_changes():
    kw = {**KW, "reuse": True}
    a = build_backbone(**kw)
    assert build_backbone(**kw) is a
    assert build_backbone(**{**kw, "seed": 1}) is not a       # other args: a new one
    b = build_backbone(**kw)
    assert b is not a and b.fingerprint == a.fingerprint      # only the last build is kept
    assert build_backbone(**kw) is b
    b.walt.variant = "image"                                  # changed since: rebuilt
    c = build_backbone(**kw)
    assert c is not b and c.walt.variant == "video"
    assert not any(p.requires_grad for p in c.parameters())
