"""Hypothesis runs the same examples on every run (a CI failure is one you can rerun here).

``python -m pytest --hypothesis-profile=explore`` draws fresh random examples instead.
"""

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("repeatable")
