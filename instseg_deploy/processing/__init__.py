"""Pre- and post-processing shared by every backend (numpy in, numpy out)."""
