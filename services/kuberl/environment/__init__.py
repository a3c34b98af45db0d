"""The environment role: actors that step vectorised environments and feed the replay."""
