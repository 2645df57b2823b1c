"""Profiling: what a scan learns about a host beyond its port states (the "Identify" step of
docs/architecture.md).

Among others: `vendor` names the organisation behind a MAC's OUI, and `osguess` guesses the OS
from the SYN-ACK fingerprints the engine captured, plus what service banners say. Those two send
no packets.
"""
