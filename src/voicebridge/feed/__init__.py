"""Feeding the bridge: replay fixtures, the demo, the post-call backfill, and the event source mapping's semantics
(``shard``) and fixture formats (``fixtures``) they share."""
