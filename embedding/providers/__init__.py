"""Embedding providers: one small interface (`base.py`), one implementation per backend."""
