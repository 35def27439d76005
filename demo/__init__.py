"""The end-to-end demo behind ``make demo`` (``demo/run.py``); not part of the product."""
