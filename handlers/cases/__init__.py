"""Cases that flow up the grid: hazards (隐患), requests (问题诉求) and accidents (事故).

Commands and conversations: ``hazards``, ``requests``, ``accidents``, ``history``; the report
conversation hazards and accidents share: ``report_flow`` (the enterprise it is for:
``report_enterprise``). The steps themselves, plain functions: ``hazard_rules``,
``request_rules``, ``accident_rules``. Posting into a case's thread in each room and keeping its
ledger: ``threads``; who acts and on which case: ``actors``; refusals: ``refusals``. Deadlines
and their jobs: ``deadlines``, ``jobs``; replies in a case's thread: ``thread_replies``.
"""
