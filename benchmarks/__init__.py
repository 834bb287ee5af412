"""Benchmarks run by ``make bench``: each module's ``main()`` prints its figures.

Timings on a shared machine are noisy, so every figure that matters is a ratio of two
things measured side by side in the same process with the same thread count.
"""
