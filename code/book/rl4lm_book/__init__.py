"""rl4lm_book: the tooling that builds the webbook, apart from the student package ``rl4lm``.

- :mod:`.book`: facts read from the book's own files (repository URL, release, table of contents).
- :mod:`.assignments`: student notebooks generated from the homework sources (solution markers checked).
- :mod:`.sphinx_ext`: the site's Sphinx extension (offline MathJax, slides, homework pages).
- :mod:`.build`: ``python -m rl4lm_book.build``, the one way the site is built (``make book``, the tests).
- :mod:`.bench`: ``make bench``.
"""
