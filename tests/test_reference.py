"""The float64 references for transposed convolution and the two convolution
gradients (numbaconv/reference.py).

They are oracles, so they are checked three ways: against PyTorch (when
installed), against each other and the forward reference through the
adjoint identity (no torch needed), and against literal Python loops over
the defining sums on tiny problems.

Tolerance: every result element is a sum of products; with ``S`` the same
function applied to absolute values (the sum of the absolute terms) we
require ``|ours - theirs| <= 1e-12 * S`` elementwise, which cannot be met
by a dropped or doubled term yet allows any summation order.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from numbaconv.reference import (conv_grad_input_reference, conv_grad_weight_reference,
                                 conv_reference, conv_transpose_reference)

RTOL = 1e-12

# Forward problems ``(id, input_shape, weight_shape, kwargs)``: the gradient
# tests differentiate them; the transposed-convolution consistency test runs
# them backwards.  Weight is (C_out, C_in/groups, *k).
GRAD_CASES = [
    ("1d_basic", (2, 3, 11), (4, 3, 3), {}),
    ("1d_stride2_pad", (2, 4, 13), (5, 4, 4), dict(stride=2, padding=1)),
    # (10 - 2) % 3 == 2: the last two inputs are in no output window
    ("1d_stride3_untouched", (1, 2, 10), (3, 2, 2), dict(stride=3)),
    ("1d_dilated_groups", (2, 6, 17), (9, 2, 3), dict(dilation=2, groups=3, padding=2)),
    ("1d_unbatched", (3, 9), (4, 3, 3), dict(stride=2, padding=1)),
    ("1d_batch0", (0, 3, 8), (2, 3, 3), dict(stride=2)),
    ("2d_basic", (2, 3, 7, 8), (4, 3, 3, 3), dict(padding=1)),
    # H: stride 3 > kernel 2 leaves rows 2, 5 untouched, and (9 - 2) % 3 == 1
    # > padding 0 row 8 too
    ("2d_stride_untouched_rows", (1, 4, 9, 10), (6, 4, 2, 3), dict(stride=(3, 2), padding=(0, 1))),
    ("2d_asym_all", (2, 3, 11, 9), (4, 3, 3, 2),
     dict(stride=(2, 3), padding=(2, 1), dilation=(2, 1))),
    ("2d_depthwise", (2, 6, 8, 9), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
    ("2d_depthwise_multiplier", (1, 4, 7, 7), (8, 1, 3, 3), dict(groups=4, dilation=2, padding=2)),
    ("2d_groups2_batch1", (1, 8, 6, 7), (6, 4, 3, 3), dict(groups=2, stride=2)),
    ("2d_kernel_covers_padded", (1, 2, 3, 3), (3, 2, 5, 5), dict(padding=1)),
    ("3d_basic", (1, 2, 5, 6, 7), (3, 2, 2, 3, 3), dict(padding=(0, 1, 1))),
    ("3d_stride_dilation_groups", (2, 4, 7, 8, 9), (6, 2, 3, 2, 3),
     dict(stride=(2, 3, 2), padding=(1, 0, 2), dilation=(2, 1, 1), groups=2)),
    ("3d_unbatched", (2, 5, 5, 6), (2, 2, 3, 3, 3), dict(stride=2, padding=1)),
]

# Transposed problems ``(id, input_shape, weight_shape, kwargs)``; weight is
# (C_in, C_out/groups, *k).  ``bias=False`` in kwargs means no bias.
TRANSPOSE_CASES = [
    ("t1d_basic", (2, 3, 7), (3, 4, 3), {}),
    # output_padding 2 > padding 0: the last two outputs lie beyond the
    # scatter's full extent and hold only the bias
    ("t1d_stride3_outpad_past_end", (1, 2, 5), (2, 3, 2), dict(stride=3, output_padding=2)),
    # output_padding >= stride is allowed when it is < dilation
    ("t1d_outpad_lt_dilation", (2, 3, 6), (3, 2, 3),
     dict(stride=1, dilation=3, output_padding=2, padding=1)),
    ("t1d_unbatched", (3, 8), (3, 2, 4), dict(stride=2, padding=1, output_padding=1)),
    ("t1d_batch0", (0, 3, 8), (3, 2, 3), dict(stride=2)),
    ("t1d_no_bias", (1, 2, 6), (2, 3, 3), dict(stride=2, bias=False)),
    ("t2d_basic", (2, 4, 5, 6), (4, 3, 3, 3), dict(padding=1)),
    ("t2d_stride2_outpad", (1, 4, 5, 6), (4, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("t2d_asym", (2, 3, 4, 7), (3, 5, 2, 3),
     dict(stride=(3, 2), padding=(0, 2), output_padding=(2, 1), dilation=(1, 2))),
    ("t2d_groups", (1, 6, 5, 5), (6, 2, 3, 3), dict(groups=3, stride=2, output_padding=1)),
    ("t2d_depthwise", (2, 5, 6, 6), (5, 1, 3, 3),
     dict(groups=5, stride=2, padding=1, dilation=2, output_padding=1)),
    ("t2d_unbatched", (4, 5, 5), (4, 2, 3, 3), dict(stride=2, output_padding=(1, 0))),
    ("t2d_big_padding", (1, 2, 6, 6), (2, 3, 3, 3), dict(padding=2)),
    ("t3d_basic", (1, 2, 3, 4, 5), (2, 3, 2, 3, 3), dict(padding=(0, 1, 1))),
    ("t3d_stride_outpad_groups", (2, 4, 3, 4, 3), (4, 1, 3, 2, 3),
     dict(stride=(2, 3, 2), padding=(1, 0, 1), output_padding=(1, 2, 0), dilation=(1, 1, 2),
          groups=2)),
    ("t3d_unbatched", (2, 3, 3, 3), (2, 2, 2, 2, 2), dict(stride=2, output_padding=1)),
]


def _ids(cases):
    return [c[0] for c in cases]


def _grad_problem(xshape, wshape, kwargs, seed=0):
    """Random input, weight and grad_output (shaped like the forward output)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xshape)
    w = rng.standard_normal(wshape)
    g = rng.standard_normal(conv_reference(x, w, None, **kwargs).shape)
    return x, w, g


def _transpose_problem(xshape, wshape, kwargs, seed=0):
    kwargs = dict(kwargs)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xshape)
    w = rng.standard_normal(wshape)
    with_bias = kwargs.pop("bias", True)
    b = rng.standard_normal(wshape[1] * kwargs.get("groups", 1)) if with_bias else None
    return x, w, b, kwargs


def _assert_close(ours, theirs, scale):
    """``|ours - theirs| <= RTOL * scale`` elementwise, same shape."""
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == np.float64
    err = np.abs(ours - theirs)
    bound = RTOL * np.broadcast_to(scale, err.shape)
    assert np.all(err <= bound), f"max error {err.max():.3g}, max bound {bound.max():.3g}"


def _remainder_output_padding(xshape, wshape, kwargs):
    """The output_padding that makes the transposed convolution of a forward
    problem's output come back to the forward input size."""
    ndim = len(wshape) - 2

    def per_dim(v):
        return (v,) * ndim if isinstance(v, int) else tuple(v)

    s, p, d = (per_dim(kwargs.get(k, dflt)) for k, dflt in
               (("stride", 1), ("padding", 0), ("dilation", 1)))
    return tuple((n + 2 * pp - dd * (k - 1) - 1) % ss for n, k, ss, pp, dd
                 in zip(xshape[-ndim:], wshape[2:], s, p, d))


# ---------------------------------------------------------------------------
# PyTorch parity
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=_ids(TRANSPOSE_CASES))
def test_conv_transpose_matches_torch(case):
    torch = pytest.importorskip("torch")
    _, xshape, wshape, kwargs = case
    x, w, b, kwargs = _transpose_problem(xshape, wshape, kwargs)
    ndim = w.ndim - 2
    fn = getattr(torch.nn.functional, f"conv_transpose{ndim}d")
    expected = fn(torch.from_numpy(x), torch.from_numpy(w),
                  None if b is None else torch.from_numpy(b), **kwargs).numpy()
    ours = conv_transpose_reference(x, w, b, **kwargs)
    scale = conv_transpose_reference(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                                     **kwargs)
    _assert_close(ours, expected, scale)
    if x.size:
        assert np.abs(ours).max() > 0


@pytest.mark.parametrize("case", GRAD_CASES, ids=_ids(GRAD_CASES))
def test_conv_grad_input_matches_torch(case):
    torch = pytest.importorskip("torch")
    _, xshape, wshape, kwargs = case
    x, w, g = _grad_problem(xshape, wshape, kwargs)
    ndim = w.ndim - 2
    unbatched = x.ndim == ndim + 1
    fn = getattr(torch.nn.grad, f"conv{ndim}d_input")
    # torch.nn.grad needs a batch axis
    batched_shape = (1,) + x.shape if unbatched else x.shape
    expected = fn(batched_shape, torch.from_numpy(w),
                  torch.from_numpy(g[None] if unbatched else g), **kwargs).numpy()
    if unbatched:
        expected = expected[0]
    ours = conv_grad_input_reference(x.shape, w, g, **kwargs)
    scale = conv_grad_input_reference(x.shape, np.abs(w), np.abs(g), **kwargs)
    _assert_close(ours, expected, scale)


@pytest.mark.parametrize("case", GRAD_CASES, ids=_ids(GRAD_CASES))
def test_conv_grad_weight_matches_torch(case):
    torch = pytest.importorskip("torch")
    _, xshape, wshape, kwargs = case
    x, w, g = _grad_problem(xshape, wshape, kwargs)
    ndim = w.ndim - 2
    unbatched = x.ndim == ndim + 1
    fn = getattr(torch.nn.grad, f"conv{ndim}d_weight")
    expected = fn(torch.from_numpy(x[None] if unbatched else x), w.shape,
                  torch.from_numpy(g[None] if unbatched else g), **kwargs).numpy()
    ours = conv_grad_weight_reference(x, w.shape, g, **kwargs)
    scale = conv_grad_weight_reference(np.abs(x), w.shape, np.abs(g), **kwargs)
    _assert_close(ours, expected, scale)


def test_grad_matches_torch_autograd():
    """The same gradients through autograd of F.conv2d (not torch.nn.grad)."""
    torch = pytest.importorskip("torch")
    _, xshape, wshape, kwargs = next(c for c in GRAD_CASES if c[0] == "2d_asym_all")
    x, w, g = _grad_problem(xshape, wshape, kwargs, seed=3)
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    torch.nn.functional.conv2d(tx, tw, **kwargs).backward(torch.from_numpy(g))
    _assert_close(conv_grad_input_reference(x.shape, w, g, **kwargs), tx.grad.numpy(),
                  conv_grad_input_reference(x.shape, np.abs(w), np.abs(g), **kwargs))
    _assert_close(conv_grad_weight_reference(x, w.shape, g, **kwargs), tw.grad.numpy(),
                  conv_grad_weight_reference(np.abs(x), w.shape, np.abs(g), **kwargs))


# ---------------------------------------------------------------------------
# torch-free: adjoint identity and mutual consistency
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", GRAD_CASES, ids=_ids(GRAD_CASES))
def test_adjoint_identity(case):
    """<conv(x, w), g> == <x, grad_input> == <w, grad_weight>."""
    _, xshape, wshape, kwargs = case
    x, w, g = _grad_problem(xshape, wshape, kwargs, seed=1)
    y = conv_reference(x, w, None, **kwargs)
    gi = conv_grad_input_reference(x.shape, w, g, **kwargs)
    gw = conv_grad_weight_reference(x, w.shape, g, **kwargs)
    assert gi.shape == x.shape and gw.shape == w.shape
    forward = np.vdot(y, g)
    # sum of the absolute values of every product in the triple sum
    scale = np.vdot(conv_reference(np.abs(x), np.abs(w), None, **kwargs), np.abs(g))
    assert abs(np.vdot(x, gi) - forward) <= RTOL * scale
    assert abs(np.vdot(w, gw) - forward) <= RTOL * scale
    if x.size:
        assert scale > 0 and abs(forward) > 1e-6 * scale   # a non-trivial identity


@pytest.mark.parametrize("case", GRAD_CASES, ids=_ids(GRAD_CASES))
def test_conv_transpose_equals_grad_input(case):
    """The transposed convolution of a forward problem's output gradient,
    with output_padding making up the size, is the input gradient."""
    _, xshape, wshape, kwargs = case
    x, w, g = _grad_problem(xshape, wshape, kwargs, seed=2)
    op = _remainder_output_padding(xshape, wshape, kwargs)
    stride = kwargs.get("stride", 1)
    dilation = kwargs.get("dilation", 1)
    if not all(o < s or o < d for o, s, d in
               zip(op, np.broadcast_to(stride, len(op)), np.broadcast_to(dilation, len(op)))):
        pytest.skip("output_padding not expressible")
    gi = conv_grad_input_reference(x.shape, w, g, **kwargs)
    gt = conv_transpose_reference(g, w, None, output_padding=op, **kwargs)
    _assert_close(gt, gi, conv_grad_input_reference(x.shape, np.abs(w), np.abs(g), **kwargs))


def test_grad_input_untouched_positions_are_zero():
    _, xshape, wshape, kwargs = next(c for c in GRAD_CASES if c[0] == "1d_stride3_untouched")
    x, w, g = _grad_problem(xshape, wshape, kwargs)
    gi = conv_grad_input_reference(x.shape, w, g, **kwargs)
    # stride 3 > kernel 2: windows cover 0,1 | 3,4 | 6,7; positions 2, 5
    # (between windows) and 8, 9 (past the last window) are in none
    touched = np.zeros(10, bool)
    touched[[0, 1, 3, 4, 6, 7]] = True
    assert np.all(gi[..., ~touched] == 0) and np.all(gi[..., touched] != 0)
    _, xshape, wshape, kwargs = next(c for c in GRAD_CASES if c[0] == "2d_stride_untouched_rows")
    x, w, g = _grad_problem(xshape, wshape, kwargs)
    gi = conv_grad_input_reference(x.shape, w, g, **kwargs)
    rows = np.zeros(9, bool)                    # H: stride 3, kernel 2, as above
    rows[[0, 1, 3, 4, 6, 7]] = True
    assert np.all(gi[:, :, ~rows, :] == 0) and np.all(gi[:, :, rows, :] != 0)


def test_conv_transpose_trailing_output_padding_is_bias():
    x = np.ones((1, 1, 2))
    w = np.ones((1, 1, 2))
    y = conv_transpose_reference(x, w, np.array([0.5]), stride=3, output_padding=2)
    # scatter: inputs at 0 and 3, taps +0 and +1 -> positions 0, 1, 3, 4; then 2 pads
    np.testing.assert_array_equal(y, [[[1.5, 1.5, 0.5, 1.5, 1.5, 0.5, 0.5]]])
    # with padding cropping the front as well
    y = conv_transpose_reference(x, w, None, stride=3, padding=1, output_padding=2)
    np.testing.assert_array_equal(y, [[[1.0, 0.0, 1.0, 1.0, 0.0]]])


def test_unbatched_and_batch_zero_shapes():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 2, 3, 3))
    x = rng.standard_normal((3, 4, 5))
    y = conv_transpose_reference(x, w, stride=2)
    assert y.shape == (2, 9, 11)
    np.testing.assert_array_equal(y, conv_transpose_reference(x[None], w, stride=2)[0])
    assert conv_transpose_reference(np.zeros((0, 3, 4, 5)), w).shape == (0, 2, 6, 7)
    wf = rng.standard_normal((4, 3, 3, 3))        # forward weight
    g0 = np.zeros((0, 4, 3, 4))
    assert conv_grad_input_reference((0, 3, 5, 6), wf, g0).shape == (0, 3, 5, 6)
    gw = conv_grad_weight_reference(np.zeros((0, 3, 5, 6)), wf.shape, g0)
    assert gw.shape == wf.shape and not gw.any()


def _naive(xshape, wshape, x, w, g, stride, padding, dilation, groups):
    """Literal loops over the defining sum of a 2-D forward problem: returns
    (grad_input, grad_weight)."""
    n_, cin, h, wd = xshape
    cout, cin_g, kh, kw = wshape
    cout_g = cout // groups
    gi = np.zeros(xshape)
    gw = np.zeros(wshape)
    oh, ow = g.shape[2:]
    for n, co, ci_l, a, b, i, j in itertools.product(range(n_), range(cout), range(cin_g),
                                                     range(kh), range(kw), range(oh), range(ow)):
        ci = (co // cout_g) * cin_g + ci_l
        r = i * stride[0] + a * dilation[0] - padding[0]
        c = j * stride[1] + b * dilation[1] - padding[1]
        if 0 <= r < h and 0 <= c < wd:
            gi[n, ci, r, c] += g[n, co, i, j] * w[co, ci_l, a, b]
            gw[co, ci_l, a, b] += g[n, co, i, j] * x[n, ci, r, c]
    return gi, gw


def test_against_literal_loops():
    kwargs = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    xshape, wshape = (2, 4, 7, 8), (6, 2, 3, 2)
    x, w, g = _grad_problem(xshape, wshape, kwargs, seed=5)
    gi_naive, gw_naive = _naive(xshape, wshape, x, w, g, kwargs["stride"], kwargs["padding"],
                                kwargs["dilation"], kwargs["groups"])
    np.testing.assert_allclose(conv_grad_input_reference(xshape, w, g, **kwargs), gi_naive,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_grad_weight_reference(x, wshape, g, **kwargs), gw_naive,
                               rtol=1e-12, atol=1e-12)
    # transposed convolution by literal loops: out[n, co, i*s + k*d - p] += x * w
    tx, tw = g, w                        # (N, C_in_t=6, ...), weight (6, C_out_t/G=2, ...)
    s, p, d, op = (2, 3), (1, 2), (2, 1), (1, 2)
    y = conv_transpose_reference(tx, tw, None, stride=s, padding=p, output_padding=op,
                                 groups=2, dilation=d)
    size = [(tx.shape[2 + a] - 1) * s[a] - 2 * p[a] + d[a] * (tw.shape[2 + a] - 1) + op[a] + 1
            for a in range(2)]
    naive = np.zeros((tx.shape[0], 4) + tuple(size))
    cin_g = 3
    for n, ci, co_l, a, b, i, j in itertools.product(
            range(tx.shape[0]), range(6), range(2), range(3), range(2),
            range(tx.shape[2]), range(tx.shape[3])):
        co = (ci // cin_g) * 2 + co_l
        r = i * s[0] + a * d[0] - p[0]
        c = j * s[1] + b * d[1] - p[1]
        if 0 <= r < size[0] and 0 <= c < size[1]:
            naive[n, co, r, c] += tx[n, ci, i, j] * tw[ci, co_l, a, b]
    np.testing.assert_allclose(y, naive, rtol=1e-12, atol=1e-12)


def test_errors():
    w = np.ones((2, 2, 3))
    with pytest.raises(ValueError):
        conv_transpose_reference(np.ones((1, 2, 3, 4)), w)          # rank mismatch
    with pytest.raises(ValueError):
        conv_transpose_reference(np.ones((1, 2, 5)), np.ones((2, 2)))  # weight rank
    with pytest.raises(ValueError):
        conv_transpose_reference(np.ones((1, 2, 5)), w, stride=2, output_padding=2)
    with pytest.raises(ValueError):
        conv_transpose_reference(np.ones((1, 2, 5)), w, stride=(1, 2))
    with pytest.raises(ValueError):
        conv_grad_input_reference((1, 2, 5, 5), w, np.ones((1, 2, 3)))  # rank mismatch
    with pytest.raises(ValueError):
        conv_grad_input_reference((1, 2, 5), w, np.ones((1, 2, 4)))     # wrong output size
    with pytest.raises(ValueError):
        conv_grad_weight_reference(np.ones((1, 2, 5)), (2, 2, 3, 3), np.ones((1, 2, 3)))
    with pytest.raises(ValueError):
        conv_grad_weight_reference(np.ones((1, 2, 5)), (2, 2, 3), np.ones((1, 3, 3)))
