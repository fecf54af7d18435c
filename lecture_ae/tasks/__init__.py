"""Applications of autoencoders: compression by bottleneck size (and, from other modules, anomaly detection)."""
