"""Launch files, parameters, robot descriptions and task definitions (2R leg, StochLite, MuJoCo tasks)."""
