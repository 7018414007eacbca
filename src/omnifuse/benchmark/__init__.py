"""The built-in procedural benchmark: the demo's data (scenes, tones, videos, mixed and text questions).

Example:
    >>> from omnifuse.benchmark import write_benchmark
    >>> write_benchmark("data/bench", n=100, seed=0)["records"]  # doctest: +SKIP
    100
"""

from omnifuse.benchmark.generate import QUESTION_TYPES, write_benchmark

__all__ = ["QUESTION_TYPES", "write_benchmark"]
