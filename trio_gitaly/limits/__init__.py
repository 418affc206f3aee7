"""Load limits: concurrency and rate limiters, adaptive limits, and cgroups."""
