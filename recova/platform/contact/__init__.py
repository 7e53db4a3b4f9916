"""Contact work: attempts and their outcomes, the tenant's outcome codes, message templates."""
