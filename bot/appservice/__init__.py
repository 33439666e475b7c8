"""Application-service mode: the homeserver pushes transactions, nothing syncs.

``receiver``      the HTTP endpoint: a transaction's events go into the inbox with its txnId
``feed``          the consumer side: hands what any process stored to the dispatcher
``registration``  the registration file for the homeserver (``gridbot appservice registration``)
"""
