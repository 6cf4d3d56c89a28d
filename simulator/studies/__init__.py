"""Capacity studies: independent replications of offline runs with confidence intervals, the
warm-up removed, scenarios compared with common random numbers, and a what-if search."""
