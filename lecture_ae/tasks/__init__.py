"""Applications of autoencoders: compression by bottleneck size (and, from other modules, anomaly detection).

One module per chapter, imported where it is used (``from lecture_ae.tasks.denoising import ...``):
:mod:`~lecture_ae.tasks.compression`, :mod:`~lecture_ae.tasks.denoising`,
:mod:`~lecture_ae.tasks.representation` (what a representation is good for: sensitivity to small
transforms, linear probes, DeepFool margins), :mod:`~lecture_ae.tasks.segmentation`,
:mod:`~lecture_ae.tasks.anomaly`.
"""
