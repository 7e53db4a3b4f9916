"""Segmentation, scoring, placement with agencies and assignment to collectors."""
