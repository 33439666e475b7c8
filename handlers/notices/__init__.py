"""Notices down the grid: /broadcast, /notice, /remind (compose, confirm, publish), acknowledgements
(✅, 收到, /ack, /feedback), /status and /notices, and the reminder and escalation jobs."""
