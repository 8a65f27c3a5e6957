"""sessionscope's benchmark, run as ``python -m bench`` (see ``__main__.py``)."""
