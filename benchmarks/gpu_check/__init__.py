"""The parts of `benchmarks/gpu.py`: the shared run state (context), the three sections (step_cost,
small_models, lane) and the Markdown report (report). `benchmarks/jvp_cost.py` reuses step_cost's step
function and timer."""
