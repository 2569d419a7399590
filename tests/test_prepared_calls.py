"""Prepared calls (issue 27, small-batch latency; Note [prepared calls] in
numbaconv/functional.py).

A host call repeated with arrays of the same layout and the same arguments
skips its checks, spec and pick, and runs what the first call found.  These
tests check that it does skip them (or the feature could be absent and the
tests still pass), that its results are the first call's to the bit, and
that nothing a pick depends on can change under a remembered call: the
threads, tuning, the registry, and the exact values of every argument (bad
input is refused every time).  The workspace limit's test is
tests/test_hardening.py's ``test_remembered_call_plans_follow_the_workspace_limit``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import numbaconv as nc
from numbaconv import dispatch, functional, grad
from numbaconv.reference import conv_reference


@pytest.fixture
def picks(monkeypatch):
    """The number of times a call resolved its algorithm (``resolve_planned``)."""
    count = [0]
    real = dispatch.resolve_planned

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    for module in (functional, grad):
        monkeypatch.setattr(module, "resolve_planned", counting)
    functional._PREPARED.clear()
    yield count
    functional._PREPARED.clear()


def _arrays(channels_last=False, dtype=np.float32, batch=2, size=9):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch, 6, size, size)).astype(dtype)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((8, 6, 3, 3)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    return x, w, b


CALLS = {
    "conv2d": lambda x, w, b, a: nc.conv2d(x, w, b, padding=1, algorithm=a, activation="relu"),
    "conv2d_residual": lambda x, w, b, a: nc.conv2d(
        x, w, b, padding=1, algorithm=a, activation="leaky_relu", negative_slope=0.2,
        residual=np.ones((x.shape[0], 8) + x.shape[2:], x.dtype)),
    "conv_transpose2d": lambda x, w, b, a: nc.conv_transpose2d(
        x, w.transpose(1, 0, 2, 3).copy()[:6], None, stride=2, padding=1, algorithm=a),
    "conv2d_input": lambda x, w, b, a: nc.grad.conv2d_input(
        x.shape, w, np.ones((x.shape[0], 8) + x.shape[2:], x.dtype), padding=1, algorithm=a),
    "conv2d_weight": lambda x, w, b, a: nc.grad.conv2d_weight(
        x, w.shape, np.ones((x.shape[0], 8) + x.shape[2:], x.dtype), padding=1, algorithm=a),
}


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_repeated_call_skips_its_pick_and_gives_the_same_bits(picks, call, algorithm,
                                                                channels_last):
    x, w, b = _arrays(channels_last)
    first = CALLS[call](x, w, b, algorithm)
    assert picks[0] == 1
    again = CALLS[call](x.copy(order="K"), w.copy(), b.copy(), algorithm)
    assert picks[0] == 1, "the second call resolved its algorithm again"
    np.testing.assert_array_equal(again, first)
    assert again.strides == first.strides          # the memory format follows the input
    assert again is not first and not np.shares_memory(again, first)


def test_a_prepared_call_computes_its_new_arrays(picks):
    x, w, b = _arrays()
    nc.conv2d(x, w, b, padding=1)
    x2, w2, b2 = (a[::-1].copy() for a in (x, w, b))
    y = nc.conv2d(x2, w2, b2, padding=1)
    assert picks[0] == 1
    ref = conv_reference(x2.astype(np.float64), w2.astype(np.float64), b2.astype(np.float64),
                         padding=1)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_dtypes_and_unbatched_calls_are_prepared_too(picks, dtype):
    x, w, b = _arrays(dtype=dtype)
    for _ in range(2):
        y = nc.conv2d(x[0], w, b, padding=1)
    assert picks[0] == 1
    assert y.shape == (8, 9, 9) and y.dtype == dtype
    np.testing.assert_array_equal(y, nc.conv2d(x[:1], w, b, padding=1, out=None)[0])


def test_another_layout_shape_or_argument_is_a_new_pick(picks):
    x, w, b = _arrays()
    nc.conv2d(x, w, b, padding=1)
    nc.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), w, b,
              padding=1)                                          # strides
    nc.conv2d(x[:1], w, b, padding=1)                             # shape
    nc.conv2d(x, w, b, padding=(1, 1))                            # an argument's type
    nc.conv2d(x, w, None, padding=1)                              # no bias
    nc.conv2d(x, w, b, padding=1, activation="leaky_relu", negative_slope=0.0)
    nc.conv2d(x, w, b, padding=1, activation="leaky_relu", negative_slope=-0.0)
    assert picks[0] == 7


def test_out_and_lists_are_never_prepared(picks):
    x, w, b = _arrays()
    out = np.empty((2, 8, 9, 9), np.float32)
    for _ in range(2):
        nc.conv2d(x, w, b, padding=1, out=out)
        nc.conv2d(x, w, b, padding=[1, 1])        # a list: checked every call
    assert picks[0] == 4
    assert not functional._PREPARED


def test_bad_input_is_refused_after_a_good_call(picks):
    x, w, b = _arrays()
    nc.conv2d(x, w, b, padding=1, activation="relu")
    with pytest.raises(ValueError, match="negative_slope"):
        nc.conv2d(x, w, b, padding=1, activation="relu", negative_slope=0.5)
    with pytest.raises(TypeError, match="dtype"):
        nc.conv2d(x.astype(np.int32), w, b, padding=1, activation="relu")
    with pytest.raises(ValueError, match="residual"):
        nc.conv2d(x, w, b, padding=1, activation="relu", residual=np.ones((2, 8, 9, 8),
                                                                            np.float32))
    with pytest.raises(ValueError):
        nc.conv2d(x, w, b, padding=1, algorithm="no such algorithm")


def test_the_thread_count_is_part_of_the_key(picks):
    x, w, b = _arrays()
    previous = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS, 1):
            numba.set_num_threads(threads)
            nc.conv2d(x, w, b, padding=1)
    finally:
        numba.set_num_threads(previous)
    expected = 1 if numba.config.NUMBA_NUM_THREADS == 1 else 2
    assert picks[0] == expected


def test_auto_with_tuning_on_is_not_prepared(picks, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    x, w, b = _arrays()
    nc.set_tuning(True)
    try:
        for _ in range(2):
            nc.conv2d(x, w, b, padding=1)
    finally:
        nc.set_tuning(None)
    assert picks[0] == 2
    nc.conv2d(x, w, b, padding=1, algorithm="direct")
    nc.conv2d(x, w, b, padding=1, algorithm="direct")
    assert picks[0] == 3                      # an explicit algorithm does not read tuning


def test_registering_an_algorithm_is_a_new_pick(picks):
    from numbaconv.algorithms import registry

    class DirectAgain(type(registry.get_algorithm("direct"))):
        name = "direct_again"

    x, w, b = _arrays()
    nc.conv2d(x, w, b, padding=1)
    before = registry.generation()
    registry.register(DirectAgain())
    try:
        assert registry.generation() != before
        nc.conv2d(x, w, b, padding=1)
    finally:
        registry.unregister("direct_again")
    nc.conv2d(x, w, b, padding=1)
    assert picks[0] == 3


def test_the_same_shape_in_another_memory_format_is_computed_in_that_format(picks):
    x, w, b = _arrays()
    contiguous = nc.conv2d(x, w, b, padding=1)
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for _ in range(2):
        y = nc.conv2d(x_cl, w, b, padding=1)
        assert y.transpose(0, 2, 3, 1).flags.c_contiguous
        np.testing.assert_allclose(y, contiguous, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transposed", [False, True])
def test_conv_backward_s_three_calls_are_remembered_apart(transposed):
    """conv_backward runs the input gradient, the weight gradient (and, for a
    transposed layer, a convolution) under one op name.  A 1x1 layer of 8
    images from 32 to 8 channels has an input and a weight of one shape,
    and an input size equal to the weight size: the prepared calls of its
    input and weight gradients had one key, and the weight gradient ran the
    input gradient's (found by ``numbaconv bench --nets`` on
    EfficientNet-B0's squeeze-excitation at batch 8)."""
    functional._PREPARED.clear()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 32, 1, 1)).astype(np.float32)
    w = rng.standard_normal((32, 8, 1, 1) if transposed else (8, 32, 1, 1)).astype(np.float32)
    g = rng.standard_normal((8, 8, 1, 1)).astype(np.float32)
    for _ in range(3):
        gi, gw, gb = nc.conv_backward(x, w, g, transposed=transposed)
    x64, w64, g64 = (a.astype(np.float64) for a in (x, w, g))
    ref_gi, ref_gw, _ = nc.conv_backward(x64, w64, g64, transposed=transposed,
                                         algorithm="direct")
    np.testing.assert_allclose(gi, ref_gi, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, ref_gw, rtol=1e-4, atol=1e-4)
