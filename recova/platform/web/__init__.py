"""Server-rendered portal pages (no build step)."""
