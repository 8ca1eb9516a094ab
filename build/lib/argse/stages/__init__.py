"""The run store and the layer that builds it: each stage of a run (the split manifest, an expert's export,
the gate with its mixture, an evaluation) is one folder named by what it was made from (argse.stages.store),
found from the run config (argse.stages.run) and built by the orchestration beside it (experts, gate,
evaluation). The method (experts, training, gating, rejectors) knows nothing of it."""
