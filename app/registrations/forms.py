"""No forms yet: dropping a registration goes through sipd's control socket (DESIGN.md),
which does not exist yet; until then this area only reads."""
