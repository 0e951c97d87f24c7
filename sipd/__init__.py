"""sipd: the PBX's SIP daemon (registrar now; B2BUA and media relay to come)."""
