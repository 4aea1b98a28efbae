"""Command-line entry points: `python -m search.evolve`, `search.throughput`, `search.benchmark`."""
