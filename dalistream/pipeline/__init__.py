"""The analysis pipeline: sampling, batching, the DALI preprocessing run and the runtime that wires the stages."""
