"""The benchmarks: the throughput harness and what it runs (a developer tool, not deployed).

Run from the repository root, as modules: ``python -m bench.run`` (or ``./dev bench``), and
``python -m bench.<module>`` for one part on its own (limits, raydata, e2e, planner, soak,
tabular_memory).
"""
