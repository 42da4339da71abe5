"""What RL does to a model: calibration and behaviour (session 6), representations (session 7),
bias and sycophancy probes (session 10), reward over-optimisation (session 11)."""
