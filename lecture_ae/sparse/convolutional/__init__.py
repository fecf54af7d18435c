r"""Convolutional sparse coding (CSC): :math:`x = \sum_j W_j * s_j`.

Patch-based sparse coding codes every patch on its own, so a dictionary must hold
one copy of an edge for every position at which it can sit in the patch: it learns
*shifted replicas* of a few filters.  Convolutional sparse coding codes the whole
image at once (Kavukcuoglu et al. 2010): the image is a sum of h small filters
:math:`W_j` (k x k) convolved with h *code maps* :math:`s_j`, so a shift of an edge is
a shift in the code map, and the filters are free to differ.

Shapes.  A batch of N grey images ``X`` is (N, H, Wd) (a single (H, Wd) image is
accepted); the filters ``W`` are (h, k, k); the code maps ``S`` are (N, h, H', Wd').

Boundary.

* ``"valid"`` (default): the code maps are smaller than the image,
  :math:`H' = H - k + 1`, and every filter placement lies inside the image.  The
  synthesis is exactly a *transposed convolution*,
  ``torch.nn.functional.conv_transpose2d(S, W)``, and its adjoint the ordinary
  convolution (cross-correlation) ``conv2d(X, W)``.
* ``"circular"``: the code maps have the image's size and the filters wrap around
  the borders (the periodic model that SPORCO's ``ConvBPDN`` solves with FFTs).  The
  synthesis is the transposed convolution followed by folding the k - 1 overflow
  rows/columns back onto the first ones; the adjoint pads the image periodically and
  convolves.

The objective, written once (no factor 1/2, mean over the N images):

.. math::

    E_{\mathrm{csc}}(W, S) = \frac1N \sum_i \Big\|x_i - \sum_j W_j * s_{ij}\Big\|_2^2
    + \lambda \sum_j \|s_{ij}\|_1 .

The codes are inferred by FISTA on the code maps with step :math:`1/L`,
:math:`L = 2\|A_W\|^2`, where :math:`A_W: S \mapsto \sum_j W_j * s_j`.  Its norm is
read off the Fourier transform: :math:`\|A_W\|^2 = \max_\omega \sum_j
|\hat W_j(\omega)|^2` (exact for ``"circular"``; an upper bound, hence a safe step,
for ``"valid"``, which is the circular operator restricted to zero-padded codes).
With ``adaptive_step=True`` the step starts at :math:`1/L` and is allowed to grow
while a backtracking test shows that the quadratic model still majorises the
reconstruction error along the step actually taken (FISTA with backtracking that may
increase the step, Calatroni & Chambolle 2019): :math:`1/L` is the worst case over all
directions, the steps FISTA takes often tolerate a several times larger one.

The filters are learned by alternating updates: codes by FISTA with the filters
fixed, then filters by projected FISTA with the codes fixed, each filter kept in
the unit ball :math:`\|W_j\|_2 \le 1` (at a solution the filters sit on the sphere:
a shorter filter would need larger, costlier codes).  The filter step is done in
the Fourier domain, where the code maps enter only through the per-frequency
h x h Gram matrices :math:`\sum_i \hat s_i(\omega) \hat s_i(\omega)^H` (as in
SPORCO's dictionary update); a filter step is kept only when it lowers
:math:`E_{\mathrm{csc}}`, so the recorded objective never increases.

The package, one job per module: :mod:`.operators` (the synthesis, its adjoint, FFTs and
the Lipschitz constant), :mod:`.coding` (objective and FISTA on the code maps),
:mod:`.filters` (filter learning), :mod:`.replicas` (replica scores); the training crops
live in :mod:`lecture_ae.data.crops` (``highpass``, ``image_crops``, re-exported here).
"""
from __future__ import annotations

from ...data.crops import highpass, image_crops
from .coding import _csc_fista, _objective_terms, _per_image, csc_fista, csc_objective
from .filters import ConvLearningResult, _filter_step, _project_unit_ball, init_filters, learn_conv_filters
from .operators import (
    BOUNDARIES,
    _FFTOperator,
    _adj,
    _operators,
    _synth,
    code_shape,
    conv_adjoint,
    conv_synthesis,
    csc_lipschitz,
)
from .replicas import replica_score, replica_scores, shift_correlation

__all__ = [
    "BOUNDARIES",
    "code_shape",
    "conv_synthesis",
    "conv_adjoint",
    "csc_objective",
    "csc_lipschitz",
    "csc_fista",
    "ConvLearningResult",
    "init_filters",
    "learn_conv_filters",
    "highpass",
    "image_crops",
    "shift_correlation",
    "replica_scores",
    "replica_score",
]
