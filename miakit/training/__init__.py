"""Training a target: the loop, DP-SGD and per-example clipping."""
