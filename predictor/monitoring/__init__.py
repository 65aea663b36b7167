"""What watches predictions, off the hot path."""
