"""Audio in, music out: dataset loading, the eight musical features and ABC transcription.

Nothing heavy is imported here; ``librosa``/``soxr`` load inside the functions that need them,
always after :func:`m2i.audio.analyze.ensure_numba_cache` has given the process its own numba
cache folder.
"""
