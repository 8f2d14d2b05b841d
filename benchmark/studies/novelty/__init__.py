"""Novelty discovery among flagged inputs (issue 18): does a new class hide among the inputs a
detector flags, and which inputs form it? The classifier stays frozen: a detector's conformal
p-values -> Benjamini-Hochberg selection -> clustering of the selected inputs' features -> a
"new class" alarm for a cluster that is large, stable under resampling, compact and in the
classifier's domain. Protocols: one batch buffer, and streams where a new class starts at a
seeded time. Every threshold comes from ID data or novelty-free validation streams.
"""

BATCH_CSV = "batch.csv"
STREAM_CSV = "streams.csv"
THRESHOLDS_JSON = "thresholds.json"
REPORT_MD = "novelty.md"
