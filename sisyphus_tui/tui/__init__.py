"""The Textual app: watch and steer a live swarm, at any log size, over SSH."""
