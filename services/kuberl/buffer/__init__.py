"""N3, the buffer role: one replay shard serving many experiments."""
