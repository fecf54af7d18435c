"""Autoencoder models of the lecture (see :mod:`lecture_ae.models.autoencoders`)."""
from .autoencoders import (
    NOISE_KINDS,
    Autoencoder,
    ConvAutoencoder,
    DenoisingAutoencoder,
    LinearAutoencoder,
    MLPAutoencoder,
    NoiseLayer,
    ReLUSparseAutoencoder,
    activation_rates,
    add_noise,
    dead_fraction,
    dead_unit_term,
    reconstruction_error,
    relu_ae_forward,
    sparse_ae_loss,
)

__all__ = [
    "NOISE_KINDS", "Autoencoder", "ConvAutoencoder", "DenoisingAutoencoder", "LinearAutoencoder", "MLPAutoencoder",
    "NoiseLayer", "ReLUSparseAutoencoder", "activation_rates", "add_noise", "dead_fraction", "dead_unit_term",
    "reconstruction_error", "relu_ae_forward", "sparse_ae_loss",
]
from .unet import UNET_VARIANTS, UNet, crop_and_concat, predict_masks, segmentation_loss  # noqa: E402  (issue 5)
