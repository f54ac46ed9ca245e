"""Provider adapters behind one protocol (``base.py``)."""
