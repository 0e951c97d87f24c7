"""The routing step: where a call goes (plan.py: the kinds of plan; decide.py: the rules)."""
