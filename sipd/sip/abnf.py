"""The RFC 3261 §25 grammar the parser needs, one regex per rule.

Each rule is quoted above the expression that implements it. Where we accept
more than the grammar (bare LF line ends, for instance), the departure is
explained in the module that relies on it.
"""

import re

# alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
# token       =  1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(rf"^{TOKEN}$")

# Method  =  INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
# extension-method  =  token
METHOD_RE = re.compile(rf"^{TOKEN}$")

# SIP-Version    =  "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION = r"SIP/2\.0"

# Request-Line   =  Method SP Request-URI SP SIP-Version CRLF
REQUEST_LINE_RE = re.compile(rf"^({TOKEN}) (\S+) ({SIP_VERSION})$")

# Status-Line     =  SIP-Version SP Status-Code SP Reason-Phrase CRLF
# Status-Code     =  3DIGIT
# Reason-Phrase   =  *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
STATUS_LINE_RE = re.compile(rf"^({SIP_VERSION}) ([1-6][0-9][0-9]) ?(.*)$")

# header-name  =  token ; message-header = field-name HCOLON field-value
# HCOLON  =  *( SP / HTAB ) ":" SWS
# (a header line is split at its first ":" and the name checked with TOKEN_RE,
# see sipd.sip.message._header_name)

# quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext         =  LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair    =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
# Written "unrolled" (runs of plain characters between quoted-pairs) rather than as
# a repeated alternation, which the regex engine tries character by character: the
# nonces and digests of every Authorization header are quoted strings.
QUOTED_STRING = r'"[^"\\\r\n]*(?:\\[\x00-\x09\x0b\x0c\x0e-\x7f][^"\\\r\n]*)*"'

# generic-param  =  token [ EQUAL gen-value ]
# gen-value      =  token / host / quoted-string
# host is covered by token except for an IPv6reference, hence the bracket form.
GEN_VALUE = rf"(?:{TOKEN}|\[[0-9A-Fa-f:.]+\]|{QUOTED_STRING})"
PARAM_RE = re.compile(rf"\s*;\s*({TOKEN})(?:\s*=\s*({GEN_VALUE}))?")

# Via: sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol     =  protocol-name SLASH protocol-version SLASH transport
# sent-by           =  host [ COLON port ]
VIA_RE = re.compile(
    rf"^\s*({TOKEN})\s*/\s*({TOKEN})\s*/\s*({TOKEN})\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*([0-9]{1,5}))?\s*(.*)$",
    re.S,
)

# CSeq  =  "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ_RE = re.compile(rf"^\s*([0-9]{{1,10}})\s+({TOKEN})\s*$")

# hostname  =  *( domainlabel "." ) toplabel [ "." ]
# IPv4address  =  1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
# IPv6reference  =  "[" IPv6address "]"
HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?)"
HOST_RE = re.compile(rf"^{HOST}$")

# SIP-URI  =  "sip:" [ userinfo ] hostport uri-parameters [ headers ]
# userinfo =  ( user / telephone-subscriber ) [ ":" password ] "@"
# user     =  1*( unreserved / escaped / user-unreserved )
# escaped  =  "%" HEXDIG HEXDIG
# (unrolled as QUOTED_STRING is, with a look-ahead for the one-or-more)
_USER_CHARS = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]"
USER = rf"(?={_USER_CHARS}|%[0-9A-Fa-f]{{2}}){_USER_CHARS}*(?:%[0-9A-Fa-f]{{2}}{_USER_CHARS}*)*"
PASSWORD = r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*"
SIP_URI_RE = re.compile(
    rf"^(sips?):(?:({USER})(?::({PASSWORD}))?@)?({HOST})(?::([0-9]{{1,5}}))?"
    r"((?:;[^;?]*)*)(?:\?(.*))?$",
    re.I,
)
# absoluteURI (tel:, urn: and the like) kept opaque: we only route sip/sips.
ABSOLUTE_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+\-.]*):(\S+)$")

# name-addr      =  [ display-name ] LAQUOT addr-spec RAQUOT
# display-name   =  *(token LWS)/ quoted-string
# Written as tokens *separated* by blanks: the literal (token [ \t]*)* let a run of
# token characters split in exponentially many ways, so "From: aaaa...a@" (40
# letters, no "<") kept the regex engine, and so the whole daemon, busy for days.
NAME_ADDR_RE = re.compile(
    rf"^\s*({QUOTED_STRING}|(?:{TOKEN}(?:[ \t]+{TOKEN})*)?)\s*<([^<>]*)>(.*)$", re.S
)

# auth-param = auth-param-name EQUAL ( token / quoted-string )
AUTH_PARAM_RE = re.compile(rf"\s*({TOKEN})\s*=\s*({TOKEN}|{QUOTED_STRING})\s*(?:,|$)")
# credentials = ... auth-param *(COMMA auth-param): the whole list, for a fullmatch
AUTH_PARAMS_RE = re.compile(rf"(?:\s*{TOKEN}\s*=\s*(?:{TOKEN}|{QUOTED_STRING})\s*(?:,|$))*")

# RFC 3262 §7.1:  RSeq  =  "RSeq" HCOLON response-num
#                 response-num  =  1*DIGIT
# (§3: a value from 1 to 2**32 - 1; ten digits at most is checked here, the range
# where the number is read, in sipd.sip.reliable)
RSEQ_RE = re.compile(r"^\s*([0-9]{1,10})\s*$")

# RFC 3262 §7.2:  RAck  =  "RAck" HCOLON response-num LWS CSeq-num LWS Method
#                 CSeq-num  =  1*DIGIT
RACK_RE = re.compile(rf"^\s*([0-9]{{1,10}})\s+([0-9]{{1,10}})\s+({TOKEN})\s*$")
