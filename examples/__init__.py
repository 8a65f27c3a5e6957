"""Runnable examples (``python examples/NAME.py``); tests import them from here too."""
