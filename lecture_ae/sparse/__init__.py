"""Sparse coding: codes, objectives, encoders (ISTA, FISTA, IHT, exact certified codes) and dictionary learning.

Every solver runs the one proximal-gradient loop of :mod:`.proximal`.
"""
from .coding import (
    IndexValueCodes,
    fista,
    hard_threshold,
    iht,
    ista,
    l0_objective,
    l1_duality_gap,
    l1_objective,
    lipschitz_constant,
    per_sample_error,
    reconstruct,
    reconstruct_index_value,
    soft_threshold,
    sparsity,
    storage_bits,
    to_index_value,
)
from .exact import LassoResult, lasso, solve_on_support
from .dictionary import (
    DictionaryLearningResult,
    batch_dictionary_learning,
    dct_dictionary,
    init_dictionary,
    online_dictionary_learning,
    update_dictionary,
)

__all__ = [
    "IndexValueCodes",
    "fista",
    "hard_threshold",
    "iht",
    "ista",
    "l0_objective",
    "l1_duality_gap",
    "lasso",
    "LassoResult",
    "solve_on_support",
    "l1_objective",
    "lipschitz_constant",
    "per_sample_error",
    "reconstruct",
    "reconstruct_index_value",
    "soft_threshold",
    "sparsity",
    "storage_bits",
    "to_index_value",
    "DictionaryLearningResult",
    "batch_dictionary_learning",
    "dct_dictionary",
    "init_dictionary",
    "online_dictionary_learning",
    "update_dictionary",
]
