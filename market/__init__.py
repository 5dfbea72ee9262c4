"""Prices and what the market did after each post.

- ``market.bars``: resolutions and a symbol's bars as a price series (the bar source interface);
- ``market.importer``: ``volfefe import-prices`` (CSV or JSON Lines into ``price_bars``);
- ``market.calendar``: an exchange's sessions (``exchange_calendars``: DST, holidays, half days);
- ``market.reaction``: the return, abnormal return, z-score and significance of each post's windows;
- ``market.db_source``: the bar source reading ``price_bars``;
- ``market.statistics``: the report's figures over reaction records and sentiments;
- ``market.settings``: the environment variables of all of the above;
- ``market.synthetic``: seeded synthetic bars with planted moves, for tests and benchmarks.

Nothing here imports ``jobs`` or ``workers``.
"""
