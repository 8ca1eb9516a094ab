"""The run config: YAML files and ``--set`` overrides validated into typed sections, and each expert's
recipe layer by layer with where every value came from."""
