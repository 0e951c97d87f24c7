"""No forms yet: bans (and lifting them) arrive with sipd's security module."""
