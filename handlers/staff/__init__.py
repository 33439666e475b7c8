"""Staff changes declared in chat: /staff, /staff-confirm, /staff-reject."""
