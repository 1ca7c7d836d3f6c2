"""Soft Actor-Critic, replay buffers, the M-DeMoRL/MBPO/MoPAC algorithms and the single-process trainer."""
