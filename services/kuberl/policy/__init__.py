"""N5, the policy role: versioned Q-network weights per experiment."""
