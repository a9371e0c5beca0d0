"""What a run shows: its report beside the baselines and the book, and its plots."""
