"""Trunks to phone providers (issue 12): outbound registration, inbound matching,
outbound calls with client digest and failover, and the toll-fraud limits."""
