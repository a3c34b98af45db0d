"""N1, the experiment role: the user-facing API that drives the other roles."""
