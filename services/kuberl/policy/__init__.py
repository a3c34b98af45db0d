"""The policy role: versioned Q-network weights per experiment."""
