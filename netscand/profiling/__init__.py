"""Profiling: what a scan learns about a host beyond its port states (DESIGN.md, step 4).

Among others: `vendor` names the organisation behind a MAC's OUI, and `osguess` guesses the OS
from the SYN-ACK fingerprints the engine captured, plus what service banners say. Those two send
no packets.
"""
