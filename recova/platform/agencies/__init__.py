"""Collection agencies contracted on the platform."""
