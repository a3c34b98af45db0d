"""The buffer role: one replay shard serving many experiments."""
