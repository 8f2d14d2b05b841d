"""The runner: ``prepare`` (data, backbone, one forward pass per split), ``evaluate`` (fit and
score one detector, failures as results), ``run`` (every detector, tables, scores, manifest),
with the score cache, the manifest, metric tables, time limits and memory profiling."""
