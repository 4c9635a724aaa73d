"""The inference core: windowing, span decoding, the engine, its backends and the model directory.

Training (train/) and the HTTP service (serve/) both build on it; it imports neither.
"""
