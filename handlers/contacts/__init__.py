"""Contact cards: each enterprise gets the people who serve and supervise it, as a file."""
