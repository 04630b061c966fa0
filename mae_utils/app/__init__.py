"""The front of the package: the command line (``cli``) and the notebooks' helpers (``tutorial``:
the quick model, live plots, paths; ``notebook_params``: papermill parameter checks). Everything
here calls the core and ``tools/``; nothing below imports it."""
