"""Run machinery: what makes a run safe and reproducible, not what the MAE computes.

Run folders and their locks (``rundir``), checkpoints (``checkpoint``), file and image IO (``fileio``,
``image_io``), data loaders (``loaders``), device set-up (``runtime``), progress bars (``progress``),
user errors (``errors``), notebook parameter checks (``notebook_params``), notebook glue
(``tutorial``) and the command line (``cli``). The algorithm lives one level up.
"""
