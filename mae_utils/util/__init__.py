"""Run machinery, the ground floor: what makes a run
safe and reproducible, not what the MAE computes.

Run folders and their locks (``rundir``), checkpoint files (``checkpoint``), file and image IO
(``fileio``, ``image_io``), the DataLoader builder and its seeds (``loaders``), device set-up
(``runtime``), progress bars (``progress``) and user errors (``errors``). Nothing here imports the
rest of the package: the algorithm lives one floor up.
"""
