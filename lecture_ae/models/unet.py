r"""U-Net {cite:p}`ronneberger2015unet` and its two ablations, from one piece of code.

An encoder computes feature maps at decreasing resolution,

.. math:: e_0 = E_0(x), \qquad e_l = E_l(\mathrm{pool}(e_{l-1})) \quad (l = 1, \dots, L-1),
          \qquad b = B(\mathrm{pool}(e_{L-1})),

where every block is two 3x3 convolutions with batch norm and ReLU, ``pool`` halves
the resolution and level :math:`l` has ``width * 2**l`` channels; :math:`b` is the
**bottleneck**, :math:`2^L` times coarser than the input (``depth`` :math:`= L`).  The
decoder goes back up, and at every level the **shortcut connection** hands it the
encoder's map of the same resolution:

.. math:: d_L = b, \qquad d_l = D_l\big([\,e_l,\ \mathrm{up}(d_{l+1})\,]\big), \qquad
          \hat y = \mathrm{head}(d_0),

with :math:`[\cdot,\cdot]` the concatenation along channels (:func:`crop_and_concat`)
and ``up`` a 2x2 transposed convolution.  The output is one logit per pixel and class.

Variants (``variant=``), all built by :class:`UNet`:

``"unet"``
    the full model: shortcuts at every level *and* the path through the bottleneck.
``"no_skip"``
    a plain encoder-decoder (no shortcut connections):
    :math:`d_l = D_l(\mathrm{up}(d_{l+1}))`.  Everything the output knows about the
    input has passed through the bottleneck :math:`b`, :math:`2^L` times coarser.
``"skip_only"``
    shortcuts only, no deep path: the output is computed from the full-resolution
    shortcut alone, :math:`\hat y = \mathrm{head}(D_0(e_0))`; nothing is ever
    downsampled, there is no bottleneck.  Precisely, each output pixel sees only the
    input pixels within ``2 * conv_per_block`` pixels of it (a 9 x 9 window with the
    default two convolutions per block): fine detail, no context.

Input sizes need not be multiples of :math:`2^L`: the input is padded (reflection) up
to the next multiple and the output cropped back, so the output always has the input's
height and width (``"same"`` padding everywhere).  The original U-Net used unpadded
("valid") convolutions instead, so its decoder had to **crop** the larger encoder map
to the size of the upsampled one before concatenating: :func:`crop_and_concat` does
that centre crop, and is the identity crop here whenever the sizes agree.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_tensor, check_int

__all__ = ["UNet", "UNET_VARIANTS", "crop_and_concat", "center_crop", "segmentation_loss", "predict_masks"]

UNET_VARIANTS = ("unet", "no_skip", "skip_only")


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central ``height`` x ``width`` window of ``x`` (..., H, W).

    When ``H - height`` is odd, the extra row goes to the bottom (the crop starts at
    ``(H - height) // 2``); likewise for columns.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor of shape (..., H, W); got {type(x).__name__}"
                         + (f" of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else ""))
    H, W = x.shape[-2:]
    if not (0 < height <= H and 0 < width <= W):
        raise ValueError(f"the crop ({height}, {width}) must fit in x of spatial size ({H}, {W})")
    top, left = (H - height) // 2, (W - width) // 2
    return x[..., top : top + height, left : left + width]


def crop_and_concat(skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""The U-Net's shortcut merge: centre-crop ``skip`` to ``x``'s size, then concatenate on channels.

    ``skip`` (N, C_s, H_s, W_s) comes from the encoder, ``x`` (N, C_x, H, W) from the
    decoder, with :math:`H \le H_s`, :math:`W \le W_s`.  The result is
    :math:`[\,\mathrm{crop}(skip),\ x\,]` of shape (N, C_s + C_x, H, W), the skip's
    channels first.  The crop starts at ``((H_s - H) // 2, (W_s - W) // 2)``.
    """
    for name, t in (("skip", skip), ("x", x)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"{name} must be a tensor of shape (N, C, H, W); got "
                             + (f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__))
    if skip.shape[0] != x.shape[0]:
        raise ValueError(f"skip and x must have the same batch size N; got {skip.shape[0]} and {x.shape[0]}")
    H, W = x.shape[-2:]
    if skip.shape[-2] < H or skip.shape[-1] < W:
        raise ValueError(f"skip must be at least as large as x to be cropped to it; got skip {tuple(skip.shape[-2:])}, x {(H, W)}")
    return torch.cat([center_crop(skip, H, W), x], dim=1)


def _block(c_in: int, c_out: int, n_conv: int, batch_norm: bool) -> nn.Sequential:
    layers = []
    for k in range(n_conv):
        layers.append(nn.Conv2d(c_in if k == 0 else c_out, c_out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net with configurable ``depth`` and ``width``; ``variant`` selects the ablation (see the module).

    Parameters
    ----------
    in_channels, out_channels : channels of the input image and of the output logits.
    depth : number of 2x downsamplings L (the bottleneck is 2^L times coarser); ignored
        by ``"skip_only"``, which never downsamples.
    width : channels of the first level; level l has ``width * 2**l``.
    variant : ``"unet"``, ``"no_skip"`` (plain encoder-decoder) or ``"skip_only"``.
    conv_per_block : 3x3 convolutions per block (2 in the original).
    batch_norm : batch normalisation after every convolution.
    seed : when given, the initial weights are drawn from this seed.

    ``forward(x)`` takes (N, in_channels, H, W) with any H, W >= 1 and returns logits
    (N, out_channels, H, W).  :meth:`loss` is the segmentation loss of a batch
    ``(X, Y)`` (used by :func:`lecture_ae.train.fit`); :meth:`features` returns the
    intermediate maps (the shortcuts ``skip0``, ``skip1``, ... and the ``bottleneck``).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, depth: int = 3, width: int = 16,
                 variant: str = "unet", conv_per_block: int = 2, batch_norm: bool = True, seed: int | None = None):
        super().__init__()
        if variant not in UNET_VARIANTS:
            raise ValueError(f"variant must be one of {UNET_VARIANTS}; got {variant!r}")
        self.in_channels = check_int(in_channels, "in_channels")
        self.out_channels = check_int(out_channels, "out_channels")
        depth = check_int(depth, "depth", low=1)
        self.depth = depth if variant != "skip_only" else 0
        self.width = check_int(width, "width")
        self.conv_per_block = check_int(conv_per_block, "conv_per_block")
        self.variant = variant
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False; got {batch_norm!r}")
        if seed is not None:
            seed = check_int(seed, "seed", low=0)
        ch = [self.width * 2**level for level in range(self.depth + 1)]
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = nn.ModuleList(
                [_block(self.in_channels if level == 0 else ch[level - 1], ch[level], self.conv_per_block, batch_norm)
                 for level in range(self.depth)]
                if self.depth else [_block(self.in_channels, ch[0], self.conv_per_block, batch_norm)])
            self.bottleneck = (_block(ch[-2], ch[-1], self.conv_per_block, batch_norm) if self.depth else None)
            self.up = nn.ModuleList([nn.ConvTranspose2d(ch[level + 1], ch[level], 2, stride=2) for level in range(self.depth)])
            skip = variant != "no_skip"
            if self.depth:
                dec_in = [ch[level] * (2 if skip else 1) for level in range(self.depth)]
            else:
                dec_in = [ch[0]]
            self.decoder = nn.ModuleList([_block(dec_in[level], ch[level], self.conv_per_block, batch_norm)
                                          for level in range(len(dec_in))])
            self.head = nn.Conv2d(ch[0], self.out_channels, 1)

    @property
    def uses_shortcuts(self) -> bool:
        return self.variant != "no_skip"

    @property
    def has_bottleneck(self) -> bool:
        return self.bottleneck is not None

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, depth={self.depth}, width={self.width}"

    # ------------------------------------------------------------------ forward
    def _check_input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (N, {self.in_channels}, H, W); got {got}")
        return x

    def _pad(self, x: torch.Tensor):
        """Reflection-pad H and W up to multiples of 2**depth; return the padded input and the crop box."""
        m = 2**self.depth
        H, W = x.shape[-2:]
        ph, pw = (-H) % m, (-W) % m
        if ph == 0 and pw == 0:
            return x, None
        top, left = ph // 2, pw // 2
        pad = (left, pw - left, top, ph - top)
        mode = "reflect" if H > ph and W > pw and H > 1 and W > 1 else "replicate"
        return F.pad(x, pad, mode=mode), (top, left, H, W)

    def _run(self, x: torch.Tensor, keep: dict | None = None) -> torch.Tensor:
        x = self._check_input(x)
        h, box = self._pad(x)
        if not self.depth:  # shortcuts only: encoder block 0 -> shortcut -> decoder block 0
            e0 = self.encoder[0](h)
            if keep is not None:
                keep["skip0"] = e0
            out = self.head(self.decoder[0](e0))
        else:
            skips = []
            for level, block in enumerate(self.encoder):
                h = block(h if level == 0 else F.max_pool2d(h, 2))
                skips.append(h)
                if keep is not None:
                    keep[f"skip{level}"] = h
            h = self.bottleneck(F.max_pool2d(h, 2))
            if keep is not None:
                keep["bottleneck"] = h
            for level in reversed(range(self.depth)):
                h = self.up[level](h)
                if self.uses_shortcuts:
                    h = crop_and_concat(skips[level], h)
                h = self.decoder[level](h)
            out = self.head(h)
        if box is not None:
            top, left, H, W = box
            out = out[..., top : top + H, left : left + W]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, out_channels, H, W) for images ``x`` (N, in_channels, H, W)."""
        return self._run(x)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> dict:
        """The encoder's maps for ``x``: ``skip0`` ... ``skip{L-1}`` (the shortcuts) and ``bottleneck``.

        Computed in the model's current mode without gradients; the maps are those of
        the padded input (sizes are multiples of 2**depth).
        """
        keep: dict = {}
        self._run(x, keep)
        return keep

    def loss(self, batch) -> torch.Tensor:
        """:func:`segmentation_loss` of a batch ``(X, Y)``; used by :func:`lecture_ae.train.fit`."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError("a U-Net batch must be a pair (X, Y) of images and masks")
        X, Y = batch
        return segmentation_loss(self(X), Y)


def segmentation_loss(logits: torch.Tensor, Y: torch.Tensor, *, dice_weight: float = 1.0) -> torch.Tensor:
    r"""Binary cross-entropy of the logits plus ``dice_weight`` times the soft Dice loss.

    .. math:: \mathcal L = -\frac{1}{n}\sum_p \big[y_p \log \sigma(z_p) + (1-y_p)\log(1-\sigma(z_p))\big]
              + w\Big(1 - \frac{2\sum_p \sigma(z_p) y_p + 1}{\sum_p \sigma(z_p) + \sum_p y_p + 1}\Big)

    over all pixels ``p`` of the batch.  The Dice term counters the imbalance of few
    foreground pixels; the +1 keeps it defined for empty masks.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(Y, torch.Tensor) or logits.shape != Y.shape:
        raise ValueError(f"logits and Y must be tensors of the same shape (N, C, H, W); got "
                         f"{getattr(logits, 'shape', type(logits).__name__)} and {getattr(Y, 'shape', type(Y).__name__)}")
    Y = Y.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, Y)
    if not dice_weight:
        return bce
    p = torch.sigmoid(logits)
    dice = (2 * (p * Y).sum() + 1) / (p.sum() + Y.sum() + 1)
    return bce + dice_weight * (1 - dice)


@torch.no_grad()
def predict_masks(model: nn.Module, X, *, threshold: float = 0.5, batch_size: int = 64, device=None) -> torch.Tensor:
    """Binary masks (N, C, H, W) as float 0/1: ``sigmoid(model(X)) > threshold``, in eval mode, on X's device."""
    from ..train import predict

    X = as_tensor(X, "X", ndim=4, shape="(N, C, H, W)")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1); got {threshold!r}")
    logits = predict(model, X, batch_size=batch_size, device=device)
    return (torch.sigmoid(logits) > threshold).to(X.dtype)
