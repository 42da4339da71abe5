"""rl4lm: the course package of the webbook "RL for Language Model Training".

Modules mirror the course: ``profiles`` and ``registry`` (tiny/full loading), ``tiny`` (the
project's own small models and data), ``attention``, ``decoding``, ``training``, ``bandits``,
``mdp``, ``checks`` (exercise checkers), ``plots``. Book tooling: ``book`` (config and table of
contents), ``assignments`` (student notebooks from solutions), ``sphinx_ext`` (the site's Sphinx
extension) and ``bench`` (``make bench``).
"""
__version__ = "0.1.0"
