"""rl4lm: the course package of the webbook "RL for Language Model Training".

What a student installs. Subpackages mirror the course:

- :mod:`rl4lm.profiles`: choose ``tiny`` or ``full`` and load every model and data set by role;
  :mod:`rl4lm.assets` holds the role table, the hub helpers and the tiny builder behind it.
- :mod:`rl4lm.lm`: attention, positions, log-probabilities, decoding, supervised fine-tuning.
- :mod:`rl4lm.rl`: bandits, MDPs, returns.
- :mod:`rl4lm.checks`: the homework checkers, ``rl4lm.checks.<exercise>(your_function)``.
- :mod:`rl4lm.plots`: the course's plotting style.

The book's own tooling (Sphinx extension, homework generator, benchmarks) is the separate package
``rl4lm_book`` in ``code/book``; it is not installed in Colab.
"""
__version__ = "0.5.0"
