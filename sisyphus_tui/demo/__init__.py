"""The demo: a sample project and the scripted refactor the swarm plays on it (see script.py)."""
