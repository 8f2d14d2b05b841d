"""Producers that run detectors beyond a plain run: robustness and ease-of-use studies, paper
tables, a library's own analyses. Each writes CSV into a run or study folder."""
