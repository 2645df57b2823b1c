"""Wire encodings several layers write or read: BER TLVs (SNMP) and DNS names.

A leaf: it imports no other layer of netscand, so the engine (its UDP payloads), profiling (the
name queries and service probes) and the lab (its servers' answers) share one copy.
"""
