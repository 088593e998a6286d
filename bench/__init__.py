"""docex benchmarks: ``python -m bench [suite ...] [--quick] [--json]`` (see bench/__main__.py)."""
