"""Statistics shared by the runner, the report and the studies: intervals and paired tests
(pure numpy/scipy; nothing here runs a model)."""
