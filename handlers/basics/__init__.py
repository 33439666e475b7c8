"""The basics every user has: /help, /whoami, /language, /cancel, and joining on invite."""
