"""Rooms and Spaces that mirror the grid, kept in step with the roster (issue 3).

roster.py  the active roster as plain data        plan.py   the rooms it calls for (pure)
texts.py   names and topics from templates        state.py  desired vs actual room state, diff
matrix.py  nio calls: 429 retry, concurrency      store.py  database bookkeeping
apply.py   the run: accounts, create, check        report.py progress and summary
cli.py     ``gridbot provision``, import hook      worker.py runs inside the bot on request
"""
