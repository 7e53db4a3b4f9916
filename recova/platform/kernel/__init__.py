"""The kernel: the floor every other part of Recova stands on; it imports none of them."""
