r"""One fit loop for every model of the lecture (autoencoders, U-Net, anomaly detectors).

:func:`fit` trains a :class:`torch.nn.Module` by minibatch gradient descent (Adam by
default) and returns a :class:`History` of the per-epoch training and validation
losses.  It gives, for every model the same way:

* **data**: ``train_data`` / ``val_data`` are a tensor ``X`` (N, ...), a tuple of
  tensors with the same first dimension (e.g. ``(X, Y)``), or a
  :class:`torch.utils.data.Dataset`.  A batch is then a tensor (for a single tensor)
  or a tuple of tensors; tensors are moved to the device once and shuffled by index,
  which is much faster on small data than a :class:`~torch.utils.data.DataLoader`;
* **the loss**: ``loss_fn(model, batch) -> scalar tensor``.  By default
  ``model.loss(batch)`` when the model defines a ``loss`` method, otherwise the mean
  squared error :math:`\frac{1}{N\,d}\sum_i \|x_i - \hat x_i\|^2` of the reconstruction of
  the batch (for a pair ``(X, Y)``: of ``model(X)`` against ``Y``);
* **seeds**: ``seed`` fixes the shuffling and every random draw inside the loop
  (noise layers, dropout), so a run repeats exactly on the same device;
* **validation and early stopping**: the validation loss after every epoch (model in
  ``eval`` mode, no gradients, random draws of the loss re-seeded so every epoch sees
  the same corruption); with ``patience`` the loop stops after that many
  epochs without improvement; the weights of the best validation epoch are restored
  at the end whenever ``val_data`` is given;
* **device**: ``device=None`` is :func:`lecture_ae.runtime.get_device` (CUDA when present);
* **progress**: one tqdm bar over the epochs (:func:`lecture_ae.runtime.progress`),
  showing the current losses;
* **checkpoints**: ``checkpoint=path`` saves the final (best) ``state_dict`` with the
  history; :func:`save_checkpoint` / :func:`load_checkpoint` do it by hand.

The model is left in ``eval`` mode on ``device`` after :func:`fit`.
"""
from __future__ import annotations

import copy
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ._checks import check_int, check_scalar
from .runtime import get_device, make_generator, progress, seed_everything

__all__ = [
    "History",
    "fit",
    "evaluate",
    "predict",
    "default_loss",
    "save_checkpoint",
    "load_checkpoint",
    "OPTIMIZERS",
]

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class History:
    """What :func:`fit` measured.

    ``train_loss[k]`` is the mean training loss over the minibatches of epoch ``k``
    (weighted by batch size, measured while the weights move); ``val_loss[k]`` the
    loss on ``val_data`` after epoch ``k`` (empty without ``val_data``).
    ``best_epoch`` is the (0-based) epoch with the lowest validation loss, whose
    weights the model holds at the end, and ``best_val`` that loss; without
    ``val_data`` they are the last epoch and ``nan``.  ``seconds`` is the wall time.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = math.nan
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        """Number of epochs that ran."""
        return len(self.train_loss)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------ data
class _Batches:
    """Minibatches of a tensor / tuple of tensors (by index) or of a Dataset (by DataLoader)."""

    def __init__(self, data, name: str, batch_size: int, device: torch.device):
        self.single = False
        self.dataset = None
        if isinstance(data, torch.Tensor):
            tensors, self.single = (data,), True
        elif isinstance(data, (tuple, list)):
            if len(data) == 0 or not all(isinstance(t, torch.Tensor) for t in data):
                raise ValueError(f"{name} must be a Tensor (N, ...), a tuple of Tensors with the same first dimension N, or a torch Dataset; got a {type(data).__name__} of {[type(t).__name__ for t in data]}")
            tensors = tuple(data)
        elif isinstance(data, Dataset):
            tensors = None
            self.dataset = data
        else:
            raise ValueError(f"{name} must be a Tensor (N, ...), a tuple of Tensors with the same first dimension N, or a torch Dataset; got {type(data).__name__}")
        if tensors is not None:
            if any(t.dim() == 0 for t in tensors):
                raise ValueError(f"{name} must hold tensors of shape (N, ...); got a 0-d tensor")
            n = {t.shape[0] for t in tensors}
            if len(n) != 1:
                raise ValueError(f"{name}: all tensors must have the same first dimension N; got {[tuple(t.shape) for t in tensors]}")
            self.n = n.pop()
            self.tensors = tuple(t.to(device) for t in tensors)
        else:
            self.n = len(data)
        if self.n == 0:
            raise ValueError(f"{name} is empty; it needs at least one sample")
        self.batch_size = batch_size
        self.device = device

    def __call__(self, shuffle: bool, generator: torch.Generator | None = None):
        if self.dataset is not None:
            loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator if shuffle else None)
            for batch in loader:
                yield _to_device(batch, self.device)
            return
        order = torch.randperm(self.n, generator=generator).to(self.device) if shuffle else None
        for start in range(0, self.n, self.batch_size):
            if order is None:
                parts = tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                idx = order[start : start + self.batch_size]
                parts = tuple(t[idx] for t in self.tensors)
            yield parts[0] if self.single else parts


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _batch_size(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0].shape[0]
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                return v.shape[0]
    return 1


# ------------------------------------------------------------------------ losses
def default_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    """The loss :func:`fit` uses without ``loss_fn``.

    ``model.loss(batch)`` when the model defines ``loss``; otherwise the mean squared
    error of ``model(x)`` against ``x`` for a tensor batch ``x`` (or a 1-tuple), and of
    ``model(x)`` against ``y`` for a pair ``(x, y)``.
    """
    own = getattr(model, "loss", None)
    if callable(own):
        return own(batch)
    if isinstance(batch, torch.Tensor):
        return F.mse_loss(model(batch), batch)
    if isinstance(batch, (tuple, list)) and len(batch) == 1:
        return F.mse_loss(model(batch[0]), batch[0])
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return F.mse_loss(model(batch[0]), batch[1])
    raise ValueError("the default loss needs a batch X or a pair (X, Y); pass loss_fn=(model, batch) -> loss for other batches")


def _make_optimizer(optimizer, params, lr, weight_decay):
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(params)
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} or a callable params -> torch.optim.Optimizer; got {optimizer!r}")
    name = optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def _check_model(model):
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")


def _check_loss_fn(loss_fn):
    if loss_fn is None:
        return default_loss
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a callable (model, batch) -> scalar tensor or None; got {type(loss_fn).__name__}")
    return loss_fn


def _scalar_loss(loss, where):
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor; got {type(loss).__name__}"
                         + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else "") + f" ({where})")
    return loss.reshape(())


@torch.no_grad()
def _evaluate(model, batches: _Batches, loss_fn, seed: int = 0) -> float:
    """Mean loss over samples; random draws inside the loss (e.g. corruption) repeat for every call."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    dev = batches.device
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in batches(shuffle=False):
            n = _batch_size(batch)
            total += float(_scalar_loss(loss_fn(model, batch), "validation")) * n
            count += n
    model.train(was_training)
    return total / max(count, 1)


def evaluate(model, data, *, loss_fn=None, batch_size=256, device=None, seed=0) -> float:
    """Mean loss of ``model`` on ``data`` (same forms as in :func:`fit`), in eval mode, no gradients.

    The mean is over samples (each batch's loss weighted by its size).  ``seed`` fixes
    any random draw the loss makes (e.g. the corruption of a denoising loss).
    """
    _check_model(model)
    loss_fn = _check_loss_fn(loss_fn)
    batch_size = check_int(batch_size, "batch_size")
    dev = get_device(device) if device is not None else _model_device(model)
    model.to(dev)
    return _evaluate(model, _Batches(data, "data", batch_size, dev), loss_fn, check_int(seed, "seed", low=0))


@torch.no_grad()
def predict(model, X, *, batch_size=256, device=None) -> torch.Tensor:
    """``model(X)`` in eval mode, batch by batch, without gradients; returned on X's device."""
    _check_model(model)
    if not isinstance(X, torch.Tensor) or X.dim() == 0:
        raise ValueError(f"X must be a Tensor of shape (N, ...); got {type(X).__name__}")
    batch_size = check_int(batch_size, "batch_size")
    dev = get_device(device) if device is not None else _model_device(model)
    model.to(dev)
    was_training = model.training
    model.eval()
    outs = [model(X[i : i + batch_size].to(dev)).to(X.device) for i in range(0, X.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(outs) if outs else X[:0]


def _model_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return get_device(None)


# ------------------------------------------------------------------------- fit
def fit(
    model: torch.nn.Module,
    train_data,
    val_data=None,
    *,
    loss_fn: Callable | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer="adam",
    patience: int | None = None,
    seed: int = 0,
    device=None,
    checkpoint: str | os.PathLike | None = None,
    show_progress: bool | None = None,
    grad_clip: float | None = None,
) -> History:
    """Train ``model`` on ``train_data``; return the :class:`History`.

    Parameters
    ----------
    model : a :class:`torch.nn.Module` (moved to ``device``).
    train_data, val_data : a Tensor (N, ...), a tuple of Tensors with the same N, or a Dataset.
    loss_fn : ``(model, batch) -> scalar tensor``; default :func:`default_loss`.
    epochs : number of passes over ``train_data`` (fewer with early stopping).
    batch_size, lr, weight_decay : minibatch size, learning rate, L2 weight decay of the optimizer.
    optimizer : ``"adam"`` (default), ``"adamw"``, ``"sgd"`` (momentum 0.9) or a callable
        ``params -> torch.optim.Optimizer``.
    patience : stop after this many epochs without a lower validation loss (needs ``val_data``).
    seed : fixes shuffling and every random draw in the loop (not the model's initial
        weights: build the model under :func:`lecture_ae.runtime.seed_everything` or with
        its own ``seed=``).
    device : ``None`` = CUDA when present, else CPU.
    checkpoint : path; the final weights (the best ones with ``val_data``) and the history
        are saved there with :func:`save_checkpoint`.
    show_progress : tqdm bar over epochs; ``None`` follows ``LECTURE_AE_PROGRESS``.
    grad_clip : clip the gradient norm to this value (``None``: no clipping).
    """
    _check_model(model)
    loss_fn = _check_loss_fn(loss_fn)
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size")
    lr = check_scalar(lr, "lr", low=0.0, low_inclusive=False)
    weight_decay = check_scalar(weight_decay, "weight_decay")
    seed = check_int(seed, "seed", low=0)
    if patience is not None:
        patience = check_int(patience, "patience")
        if val_data is None:
            raise ValueError("patience (early stopping) needs val_data: the loop stops on the validation loss")
    if grad_clip is not None:
        grad_clip = check_scalar(grad_clip, "grad_clip", low=0.0, low_inclusive=False)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise ValueError(f"checkpoint must be a file path or None; got {type(checkpoint).__name__}")
    if show_progress is not None and not isinstance(show_progress, bool):
        raise ValueError(f"show_progress must be True, False or None; got {show_progress!r}")
    dev = get_device(device)
    model.to(dev)
    train = _Batches(train_data, "train_data", batch_size, dev)
    val = _Batches(val_data, "val_data", batch_size, dev) if val_data is not None else None
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = _make_optimizer(optimizer, params, lr, weight_decay)

    seed_everything(seed)
    shuffle_gen = make_generator(seed)
    hist = History()
    best_state, best_val, since_best = None, math.inf, 0
    t0 = time.perf_counter()
    bar = progress(range(epochs), show=show_progress, desc=f"fit {type(model).__name__}", unit="epoch")
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for batch in train(shuffle=True, generator=shuffle_gen):
            loss = _scalar_loss(loss_fn(model, batch), "training")
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(f"the training loss became {float(loss.detach())} in epoch {epoch}; lower lr (now {lr}) or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            n = _batch_size(batch)
            total += float(loss.detach()) * n
            count += n
        hist.train_loss.append(total / count)
        postfix = {"train": f"{hist.train_loss[-1]:.4g}"}
        if val is not None:
            v = _evaluate(model, val, loss_fn, seed)
            hist.val_loss.append(v)
            postfix["val"] = f"{v:.4g}"
            if v < best_val:
                best_val, since_best = v, 0
                hist.best_epoch, hist.best_val = epoch, v
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
        bar.set_postfix(postfix)
        if patience is not None and since_best >= patience:
            hist.stopped_early = True
            break
    bar.close()
    if val is None:
        hist.best_epoch = hist.epochs - 1
    elif best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    hist.seconds = time.perf_counter() - t0
    if checkpoint is not None:
        save_checkpoint(model, checkpoint, history=hist.to_dict())
    return hist


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(model: torch.nn.Module, path, **meta) -> None:
    """Save ``model.state_dict()`` and the keyword arguments ``meta`` (plain Python values) to ``path``.

    The parent folder is created when missing.  Load with :func:`load_checkpoint`.
    """
    _check_model(model)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path; got {type(path).__name__}")
    for key, value in meta.items():
        if not _plain(value):
            raise ValueError(f"meta[{key!r}] must be plain data (numbers, strings, lists, dicts, tensors); got {type(value).__name__}")
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": meta, "class": type(model).__name__}, path)


def load_checkpoint(model: torch.nn.Module, path, *, strict: bool = True) -> dict:
    """Load weights saved by :func:`save_checkpoint` into ``model`` (on the model's device); return the meta dict."""
    _check_model(model)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path; got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ValueError(f"path {os.fspath(path)!r} is not a checkpoint file (save one with save_checkpoint or fit(checkpoint=...))")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"{os.fspath(path)!r} is not a lecture_ae checkpoint (no 'state_dict' entry)")
    saved, mine = blob.get("class"), type(model).__name__
    if strict and saved is not None and saved != mine:
        raise ValueError(f"checkpoint {os.fspath(path)!r} holds a {saved}, not a {mine}")
    model.load_state_dict(blob["state_dict"], strict=strict)
    return dict(blob.get("meta", {}))


def _plain(value) -> bool:
    if value is None or isinstance(value, (bool, numbers.Number, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    return False
