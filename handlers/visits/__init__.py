"""Visits, meetings and training: /visit, /visits, /meeting, /training and their monthly and
quarterly reminders."""
