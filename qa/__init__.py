"""The inference core: windowing, span decoding, the engine, its backends and the model directory.

Training (train/) and the HTTP service (serve/) both build on it; it imports neither.
"""

__all__ = ["QuestionAnswerer"]


def __getattr__(name: str):
    # Lazy, so that `import qa.files` (the image's exporter stage, the config loader) stays light.
    if name == "QuestionAnswerer":
        from qa.pipeline import QuestionAnswerer

        return QuestionAnswerer
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
