import pytest

from netscand.profiling.vendor import RANDOMIZED, _lookup, vendor

# Organisation names as netaddr's copy of the IEEE MA-L registry spells them.
KNOWN = {
    "00:00:0C:12:34:56": "Cisco Systems, Inc",
    "00:50:56:AB:CD:EF": "VMware, Inc.",
    "B8:27:EB:00:00:01": "Raspberry Pi Foundation",
    "3C:5A:B4:00:00:01": "Google, Inc.",
}


@pytest.mark.parametrize(("mac", "org"), KNOWN.items())
def test_registered_ouis_name_their_organisation(mac, org):
    assert vendor(mac) == org


@pytest.mark.parametrize("spelling", ["00:00:0c:12:34:56", "00-00-0C-12-34-56", "00-00-0c-12-34-56",
                                      "00:00:0C:12:34:56", " 00:00:0c:12:34:56\n"])
def test_any_case_and_either_separator(spelling):
    assert vendor(spelling) == "Cisco Systems, Inc"


def test_iab_blocks_name_their_owner():
    # 00-50-C2 is an IAB parent: the owner of 00-50-C2-F7-1x-xx is in netaddr's IAB registry.
    assert vendor("00:50:C2:F7:10:01") == "RF Code"


def test_sub_assigned_block_without_owner_data_is_unknown_not_the_registry():
    # 70-B3-D5 is registered to the IEEE RA and split into MA-S blocks netaddr does not carry.
    assert vendor("70:B3:D5:00:00:01") is None


@pytest.mark.parametrize("mac", ["02:00:00:00:00:01", "DA:A1:19:12:34:56", "02:42:ac:11:00:02",
                                 "fe-ed-fa-ce-00-01"])
def test_locally_administered_unregistered_macs_are_reported_as_randomized(mac):
    assert vendor(mac) == RANDOMIZED


def test_locally_administered_bit_on_a_registered_oui_gives_the_registrant():
    # AA-00-04 is an old DEC registration whose first octet has the U/L bit set.
    assert vendor("AA:00:04:00:12:34") == "DIGITAL EQUIPMENT CORPORATION"


def test_unregistered_universal_oui_is_unknown():
    assert vendor("F4:00:00:12:34:56") is None  # not in netaddr 1.3's registry, U/L bit clear
    assert vendor("00:00:00:00:00:00") is None  # the placeholder address, not a Xerox NIC


@pytest.mark.parametrize("mac", ["01:00:5E:00:00:FB", "01:00:5e:7f:ff:fa", "33:33:00:00:00:01",
                                 "FF:FF:FF:FF:FF:FF", "01:80:C2:00:00:00"])
def test_multicast_and_broadcast_are_none(mac):
    assert vendor(mac) is None


@pytest.mark.parametrize("mac", ["", "00:00:0C", "00:00:0C:12:34", "00:00:0C:12:34:56:78", "0:0:c:12:34:56",
                                 "00:00:0C:12:34:5G", "00:00-0C:12:34:56", "00000C123456", "0000.0c12.3456",
                                 "00:00:0C:12:34:56:", "zz:zz:zz:zz:zz:zz", "00：00：0C：12：34：56"])
def test_malformed_is_none(mac):
    assert vendor(mac) is None


@pytest.mark.parametrize("value", [None, 5, b"00:00:0C:12:34:56", 0x00000C123456])
def test_non_strings_are_none(value):
    assert vendor(value) is None


def test_lookups_are_cached_across_spellings():
    vendor("00:50:56:01:02:03")
    before = _lookup.cache_info().hits
    assert vendor("00-50-56-01-02-03") == vendor("00:50:56:01:02:03") == "VMware, Inc."
    assert _lookup.cache_info().hits >= before + 2
