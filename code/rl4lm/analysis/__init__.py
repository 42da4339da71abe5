"""What RL does to a model: calibration and behaviour (session 6), representations (session 7)."""
