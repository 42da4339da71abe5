"""Reinforcement learning: multi-armed bandits (:mod:`.bandits`), MDPs, returns and tabular values (:mod:`.mdp`)."""
