"""Where the course's models and data sets come from: the role table (:mod:`.roles`), the cache folder
(:mod:`.cache`), the Hugging Face hub (:mod:`.hub`) and the tiny build (:mod:`.tiny`).

Notebooks do not import this package directly; they call :mod:`rl4lm.profiles`.
"""
