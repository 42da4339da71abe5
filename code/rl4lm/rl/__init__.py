"""Reinforcement learning: bandits (:mod:`.bandits`), returns (:mod:`.mdp`), dynamic programming (:mod:`.dp`),
Q-learning (:mod:`.td`), policy-gradient losses (:mod:`.policy_gradient`), REINFORCE and PPO on CartPole
(:mod:`.reinforce`, :mod:`.ppo`) on vector environments (:mod:`.envs`)."""
