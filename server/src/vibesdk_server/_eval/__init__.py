"""Evaluation: a golden set of math and code problems, run through the SDK per variant, scored.

:mod:`.golden` reads the set, :mod:`.scoring` scores one answer, :mod:`.runner` sends every
item through a real :class:`vibesdk.Client` as each variant and summarizes the scores.
"""
