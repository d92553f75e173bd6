"""Templates rendered in worker processes under CPU, memory and time limits."""
