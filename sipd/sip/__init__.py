"""The sans-IO SIP core: messages, headers, digest, transactions, registration rules.

Contains no networking code at all and never reads the clock or the database:
bytes and values in, values and actions out. `sipd.transport` carries out what
this package decides.
"""
