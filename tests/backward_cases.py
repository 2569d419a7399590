"""Named problems for the gradient and transposed-convolution tests.

:data:`GRAD_CASES` are forward convolutions ``(id, input_shape, weight_shape,
kwargs)`` whose input and weight gradients are tested (kwargs: stride,
padding, dilation, groups as ints or tuples; no padding strings or modes,
which the gradients do not take).  :data:`TRANSPOSED_CASES` are transposed
convolutions ``(id, input_shape, weight_shape, kwargs)`` with the weight in
``conv_transpose``'s layout ``(C_in, C_out/groups, k...)`` and kwargs
stride, padding, output_padding, dilation, groups and ``bias`` (bool).

The rewrites of Note [one general convolution] (numbaconv/spec.py) and
Note [phases] (numbaconv/rewrites.py) have edge cases that the table must
reach; :func:`tests.test_backward.test_case_tables_cover_the_edge_cases`
checks that it does:

* rewritten padding ``dilation * (k - 1) - padding`` negative (a crop):
  ``padding > dilation * (k - 1)``;
* kernels with fewer taps than the stride (phases without taps: bias only);
* input rows that no output window reads (the input gradient's zero rows,
  a nonzero derived ``output_padding``);
* strides 1 to 3, dilation (with gcd(stride, dilation) of 1 and above),
  groups, depthwise and depthwise-with-multiplier, batch 0, batch 1 and
  unbatched, 1-D, 2-D and 3-D;
* transposed: ``output_padding`` below the stride and, with stride 1,
  below the dilation only; with and without bias.

Sizes are small: every case runs through five algorithms, two dtypes and
the float64 references.
"""

GRAD_CASES = [
    # ---- 1-D -------------------------------------------------------------
    ("1d_basic", (2, 3, 17), (5, 3, 3), {}),
    ("1d_stride2_pad2", (2, 4, 20), (6, 4, 5), dict(stride=2, padding=2)),
    ("1d_stride3_untouched_tail", (1, 3, 14), (4, 3, 3), dict(stride=3)),
    ("1d_kernel2_stride3", (2, 2, 11), (3, 2, 2), dict(stride=3)),
    ("1d_padding_beyond_kernel", (1, 2, 6), (3, 2, 3), dict(padding=4)),
    ("1d_dilated_groups_stride2", (1, 6, 25), (9, 2, 3),
     dict(dilation=3, groups=3, padding=1, stride=2)),
    ("1d_unbatched", (3, 10), (4, 3, 3), dict(padding=1, stride=2)),
    ("1d_empty_batch", (0, 3, 10), (4, 3, 3), dict(stride=2)),
    # ---- 2-D -------------------------------------------------------------
    ("2d_basic", (2, 3, 9, 10), (4, 3, 3, 3), dict(padding=1)),
    ("2d_stride2_odd", (2, 8, 15, 13), (10, 8, 3, 3), dict(stride=2, padding=1)),
    ("2d_stride2_even_untouched", (1, 4, 16, 16), (6, 4, 3, 3), dict(stride=2, padding=1)),
    ("2d_asym_stride", (1, 9, 16, 17), (5, 9, 3, 2), dict(stride=(2, 3), padding=(1, 0))),
    ("2d_kernel2_stride3", (1, 3, 11, 10), (4, 3, 2, 2), dict(stride=3)),
    ("2d_pointwise_stride2", (2, 6, 9, 8), (5, 6, 1, 1), dict(stride=2)),
    ("2d_dilated", (1, 8, 17, 17), (8, 8, 3, 3), dict(padding=2, dilation=2)),
    ("2d_dilated_strided", (1, 4, 14, 13), (4, 4, 3, 3), dict(dilation=2, stride=2, padding=1)),
    ("2d_dilation_coprime_stride", (1, 2, 13, 12), (3, 2, 3, 2),
     dict(dilation=(3, 2), stride=(2, 3), padding=(1, 2))),
    ("2d_padding_beyond_kernel", (1, 3, 5, 6), (4, 3, 3, 3), dict(padding=(3, 4))),
    ("2d_padding_beyond_kernel_strided", (2, 3, 7, 6), (2, 3, 3, 2),
     dict(stride=2, padding=(3, 2))),
    ("2d_depthwise", (2, 12, 10, 9), (12, 1, 3, 3), dict(padding=1, groups=12)),
    ("2d_depthwise_stride2", (1, 6, 11, 12), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
    ("2d_depthwise_multiplier_stride2", (1, 4, 8, 8), (8, 1, 3, 3),
     dict(padding=1, groups=4, stride=2)),
    ("2d_groups2", (2, 8, 9, 9), (6, 4, 3, 3), dict(groups=2, padding=1)),
    ("2d_many_channels_stride2", (1, 16, 9, 9), (12, 16, 3, 3), dict(padding=1, stride=2)),
    ("2d_batch1_untouched", (1, 5, 8, 6), (3, 5, 3, 3), dict(stride=2)),
    ("2d_unbatched", (3, 6, 7), (2, 3, 3, 3), dict(padding=1)),
    ("2d_empty_batch", (0, 3, 6, 7), (2, 3, 3, 3), dict(stride=2)),
    # ---- 3-D -------------------------------------------------------------
    ("3d_basic", (1, 3, 6, 7, 8), (4, 3, 3, 3, 3), dict(padding=1)),
    ("3d_stride_dilation", (1, 4, 11, 10, 9), (5, 4, 2, 3, 3),
     dict(stride=(2, 1, 3), dilation=(2, 2, 1), padding=(1, 2, 0))),
    ("3d_depthwise_stride2", (2, 4, 7, 6, 5), (4, 1, 3, 3, 3),
     dict(stride=2, padding=1, groups=4)),
    ("3d_unbatched_padding_beyond_kernel", (2, 4, 5, 5), (3, 2, 2, 2, 2),
     dict(padding=2, stride=(1, 2, 3))),
    ("3d_empty_batch", (0, 2, 4, 4, 4), (2, 2, 3, 3, 3), dict(stride=2, padding=1)),
    # one input depth slice with depth taps (im2col's same-width fill once
    # ignored them; found by hypothesis on the forward convolution)
    ("3d_one_slice_depth_taps", (2, 3, 1, 5, 6), (4, 3, 2, 3, 3), dict(padding=1)),
]

TRANSPOSED_CASES = [
    # ---- 1-D -------------------------------------------------------------
    ("t1d_stride2_op1", (2, 3, 8), (3, 4, 3), dict(stride=2, padding=1, output_padding=1)),
    ("t1d_op_below_dilation", (1, 2, 6), (2, 3, 3), dict(dilation=3, output_padding=2)),
    ("t1d_kernel2_stride3_op2", (2, 3, 5), (3, 2, 2), dict(stride=3, output_padding=2)),
    ("t1d_unbatched_groups", (4, 7), (4, 2, 4),
     dict(stride=2, padding=2, groups=2, output_padding=1)),
    # ---- 2-D -------------------------------------------------------------
    ("t2d_stride2_op1", (2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("t2d_asym", (1, 3, 4, 5), (3, 2, 3, 2),
     dict(stride=(2, 3), padding=(0, 1), output_padding=(1, 2), dilation=(1, 2))),
    ("t2d_depthwise_stride2", (1, 6, 5, 5), (6, 1, 3, 3),
     dict(stride=2, padding=1, output_padding=1, groups=6)),
    ("t2d_depthwise_multiplier", (2, 4, 4, 5), (4, 2, 3, 3), dict(stride=2, padding=1, groups=4)),
    ("t2d_stride1_3x3", (1, 5, 6, 7), (5, 4, 3, 3), dict(padding=1)),
    ("t2d_padding_beyond_kernel", (1, 2, 6, 6), (2, 3, 3, 3), dict(padding=3)),
    ("t2d_padding_beyond_kernel_strided", (1, 2, 5, 6), (2, 3, 2, 3),
     dict(stride=3, padding=3, output_padding=(2, 1), dilation=(1, 2))),
    ("t2d_op_below_dilation", (1, 3, 4, 4), (3, 2, 3, 3),
     dict(dilation=2, padding=2, output_padding=1)),
    ("t2d_empty_batch_no_bias", (0, 3, 4, 4), (3, 2, 3, 3), dict(stride=2, bias=False)),
    ("t2d_no_bias_groups", (1, 6, 5, 4), (6, 2, 3, 3), dict(stride=2, groups=3, bias=False)),
    # ---- 3-D -------------------------------------------------------------
    ("t3d_stride2", (1, 3, 3, 4, 3), (3, 2, 3, 3, 3),
     dict(stride=2, padding=1, output_padding=(1, 0, 1))),
    ("t3d_unbatched_groups", (4, 3, 3, 3), (4, 1, 2, 2, 2),
     dict(stride=(1, 2, 3), groups=2, output_padding=(0, 1, 2))),
]
