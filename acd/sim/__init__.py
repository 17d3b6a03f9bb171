"""The what-if simulator: the real routing core on a virtual clock (`acd simulate`)."""
