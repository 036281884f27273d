"""``python -m analysis.neurons build|list`` (``make index``): build or list neuron indexes."""

from analysis.neurons.index import build_command

raise SystemExit(build_command())
