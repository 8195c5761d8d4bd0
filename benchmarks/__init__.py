"""asv benchmarks of autodiffx: primitives, the engine, and the design doc workloads."""
