"""Wire formats, each decoding against the one typed schema (``protocol/schema.py``)."""
