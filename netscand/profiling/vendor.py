"""Vendor of a MAC address, from the IEEE registries that netaddr ships.

netaddr carries the MA-L (OUI) and IAB registries. An OUI whose registrant is the IEEE
Registration Authority itself was split into smaller blocks (MA-M, MA-S, IAB); of those netaddr
has only the IAB ones, so any other such address has no known vendor and gets None rather than
the registry's own name. A locally administered address (bit 0x02 of the first octet) is one the
device made up, today mostly a privacy-randomized MAC, unless its OUI is one of the few old
registrations that have that bit set.
"""

from __future__ import annotations

import re
from functools import lru_cache

from netaddr import EUI, OUI, NotRegisteredError

RANDOMIZED = "Randomized (locally administered)"

_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}")
_MULTICAST = 0x01 << 40  # I/G bit of the first octet
_LOCAL = 0x02 << 40  # U/L bit of the first octet
# Registrants that name no organisation: the IEEE RA (the block is sub-assigned) and "Private".
_NO_NAME = frozenset({"ieee registration authority", "private"})


def vendor(mac: str | None) -> str | None:
    """The organisation a MAC's OUI (or IAB) is registered to, RANDOMIZED, or None.

    None for None, anything that is not six hex octets joined by ':' or '-', group (multicast
    and broadcast) addresses, the all-zero address, and registered blocks with no named owner.
    """
    if not isinstance(mac, str):
        return None
    text = mac.strip()
    if not _MAC.fullmatch(text):
        return None
    value = int(text.replace(text[2], ""), 16)
    if value & _MULTICAST or value == 0:
        return None
    return _lookup(value)


@lru_cache(maxsize=4096)
def _lookup(value: int) -> str | None:
    registered, org = _registered_org(value)
    if registered:
        return org
    return RANDOMIZED if value & _LOCAL else None


def _registered_org(value: int) -> tuple[bool, str | None]:
    """(whether the address's OUI is in the registry at all, the named owner if one is known)."""
    try:
        oui = OUI(value >> 24)
        orgs = [oui.registration(i).org for i in range(oui.reg_count)]
    except (NotRegisteredError, IndexError, ValueError):
        return False, None
    names = [o.strip() for o in orgs if o and o.strip() and o.strip().lower() not in _NO_NAME]
    if names:
        # A handful of early OUIs were registered to several organisations: name them all.
        return True, " / ".join(dict.fromkeys(names))
    eui = EUI(value)
    if eui.is_iab():
        try:
            org = eui.iab.registration().org.strip()
        except (NotRegisteredError, IndexError, ValueError):
            org = ""
        if org and org.lower() not in _NO_NAME:
            return True, org
    return True, None
