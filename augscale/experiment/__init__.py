"""Scaling-by-data experiments: the arm grid, the runner that trains and evaluates each arm, the demo."""
