"""Batched probabilistic ensemble dynamics and the DMD-MPC inner loop (CEM elites, MPPI) of M-DeMoRL."""
