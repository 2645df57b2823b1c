import itertools
import random
import struct

import pytest

from netscand.profiling.osguess import (
    Guess,
    Layout,
    Observation,
    _table,
    guess,
    initial_ttl,
    ipid_behaviour,
    option_layout,
)
from netscand.scan.result import Fingerprint

# Real SYN-ACKs (IPv4 header + TCP header with options) from Linux 6.18, captured with an
# AF_PACKET socket on lo inside a throwaway network namespace (lo MTU 1500, so MSS 1460): a
# listener on 127.0.0.1 answered (a) an ordinary connect(), whose SYN offers MSS, SACK_PERM, TS
# and WS, and (b) a raw SYN carrying only MSS, as netscand's tcp_syn probe does. Then again with
# the namespace's net.ipv4.tcp_timestamps=0 and ip_default_ttl=128, and with ip_default_ttl=255.
LINUX_CONNECT = bytes.fromhex(
    "4500003c0000400040063cba7f0000017f0000018a77950293ec14654c69429ca012fe88fe300000"
    "020405b40402080a4952bfd6a4f0d5830103030a")
LINUX_MSS_ONLY = bytes.fromhex(
    "4500002c0000400040063cca7f0000017f0000018a779c404689fef4123456796012faf0fe200000020405b4")
LINUX_TTL128_NOTS_CONNECT = bytes.fromhex(
    "45000034000040008006fcc17f0000017f000001801dd406d80f4cfcadd2522c8012faf0fe280000"
    "020405b4010104020103030a")
LINUX_TTL128_NOTS_MSS_ONLY = bytes.fromhex(
    "4500002c000040008006fcc97f0000017f000001801d9c4023235f04123456796012faf0fe200000020405b4")
LINUX_TTL255_CONNECT = bytes.fromhex(
    "4500003c00004000ff067db97f0000017f0000019085804acef83b3216df7fcaa012fe88fe300000"
    "020405b40402080afdc4ebaa515ed0160103030a")
LINUX_TTL255_MSS_ONLY = bytes.fromhex(
    "4500002c00004000ff067dc97f0000017f00000190859c40e80d71c1123456796012faf0fe200000020405b4")

DEBIAN_SSH = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u2"
UBUNTU_SSH = "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6"
RASPBIAN_SSH = "SSH-2.0-OpenSSH_7.9p1 Raspbian-10+deb10u2"
FREEBSD_SSH = "SSH-2.0-OpenSSH_9.3 FreeBSD-20230316"
IIS = "HTTP/1.1 200 OK\r\nServer: Microsoft-IIS/10.0\r\n"
WINDOWS_SSH = "SSH-2.0-OpenSSH_for_Windows_8.1"
PLAIN_HTTP = "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\n"


def observed(packet: bytes, hops: int = 0) -> Observation:
    """An Observation from a captured IPv4+TCP packet, as the engine would record it."""
    ihl = (packet[0] & 0x0F) * 4
    tcp = packet[ihl:]
    off = (tcp[12] >> 4) * 4
    ipid, frag, ttl = struct.unpack_from("!HHB", packet, 4)
    win = struct.unpack_from("!H", tcp, 14)[0]
    return Observation(ttl - hops, win, ipid, tcp[20:off], bool(frag & 0x4000))


# Option bytes built from names, with fixed sample values.
_OPT = {"mss": b"\x02\x04\x05\xb4", "nop": b"\x01", "ws": b"\x03\x03\x08", "sok": b"\x04\x02",
        "ts": b"\x08\x0a" + bytes.fromhex("0011223344556677"), "eol": b"\x00"}


def opts(layout: str) -> bytes:
    raw = b"".join(_OPT[k] for k in layout.split(","))
    return raw + b"\x00" * (-len(raw) % 4)  # stacks pad to 4 bytes; after EOL it is padding


def counter(start: int, n: int) -> list[int]:
    return [(start + 7 * i) & 0xFFFF for i in range(n)]


# --- initial TTL ---------------------------------------------------------------------------

@pytest.mark.parametrize(("ttl", "initial"), [(64, 64), (57, 64), (33, 64), (32, 32), (1, 32), (128, 128),
                                              (65, 128), (121, 128), (129, 255), (255, 255), (240, 255)])
def test_initial_ttl_rounds_up(ttl, initial):
    assert initial_ttl(ttl) == initial


@pytest.mark.parametrize("ttl", [0, -1, 256, 1000, None, "64"])
def test_initial_ttl_of_nonsense_is_none(ttl):
    assert initial_ttl(ttl) is None


# --- option layouts ------------------------------------------------------------------------

def test_captured_linux_layouts():
    assert option_layout(observed(LINUX_CONNECT).opts) == Layout(("mss", "sok", "ts", "nop", "ws"))
    assert option_layout(observed(LINUX_TTL128_NOTS_CONNECT).opts) == Layout(
        ("mss", "nop", "nop", "sok", "nop", "ws"))
    assert option_layout(observed(LINUX_MSS_ONLY).opts) == Layout(("mss",))
    assert not option_layout(observed(LINUX_MSS_ONLY).opts).telling


def test_captured_linux_layouts_are_in_the_table():
    linux = next(s for s in _table()[0] if s.name == "Linux")
    for packet in (LINUX_CONNECT, LINUX_TTL128_NOTS_CONNECT, LINUX_MSS_ONLY):
        assert option_layout(observed(packet).opts).kinds in linux.layouts
    assert {observed(p).win for p in (LINUX_CONNECT, LINUX_MSS_ONLY)} <= linux.windows
    assert {observed(p).ipid for p in (LINUX_CONNECT, LINUX_MSS_ONLY, LINUX_TTL128_NOTS_CONNECT)} == {0}


def test_every_table_layout_round_trips_through_bytes():
    for sig in _table()[0]:
        for layout in sig.layouts:
            assert option_layout(opts(",".join(layout))) == Layout(layout), (sig.name, layout)


def test_eol_ends_the_list_and_padding_after_it_is_ignored():
    assert option_layout(b"\x02\x04\x05\xb4\x04\x02\x00\x00") == Layout(("mss", "sok", "eol"))
    assert option_layout(b"\x02\x04\x05\xb4\x00\x08\x0a\x00") == Layout(("mss", "eol"))


def test_options_cut_inside_the_last_option_are_a_truncated_prefix():
    # netscand's result record keeps 21 option bytes; macOS's full SYN-ACK set is 24.
    full = opts("mss,nop,ws,nop,nop,ts,sok,eol")
    assert len(full) == 24
    lay = option_layout(full[:21])
    assert lay == Layout(("mss", "nop", "ws", "nop", "nop", "ts", "sok"), truncated=True)
    assert lay.matches(("mss", "nop", "ws", "nop", "nop", "ts", "sok", "eol"))
    assert not lay.matches(("mss", "nop", "ws", "nop", "nop", "ts"))
    assert option_layout(full[:16]) == Layout(("mss", "nop", "ws", "nop", "nop", "ts"), truncated=True)


@pytest.mark.parametrize("raw", [b"\x02", b"\x02\x00", b"\x02\x01\x05", b"\x02\x05\x05\xb4\x00",
                                 b"\x03\x02", b"\x08\x04\x00\x00", b"\x04\x03\x00"])
def test_malformed_options_are_none(raw):
    assert option_layout(raw) is None or option_layout(raw).truncated


@pytest.mark.parametrize("raw", [None, "020405b4", 1460, [2, 4, 5, 180]])
def test_non_bytes_options_are_none(raw):
    assert option_layout(raw) is None


def test_garbage_options_never_raise():
    rng = random.Random(4)
    blobs = [bytes(rng.randrange(256) for _ in range(rng.randrange(41))) for _ in range(3000)]
    blobs += [bytes([k]) * n for k in (0, 1, 2, 3, 4, 8, 255) for n in range(1, 41)]
    blobs += [opts("mss,sok,ts,nop,ws")[:n] for n in range(21)]
    for blob in blobs:
        option_layout(blob)
        option_layout(bytearray(blob))
        option_layout(memoryview(blob))
        guess([Observation(64, 64240, 0, blob)])
        guess([Observation(rng.randrange(-5, 300), rng.randrange(70000), rng.randrange(70000), blob)])


def test_nonsense_observation_fields_never_raise():
    odd = [Observation(0, 0, 0, b""), Observation(300, -1, -1, b"\x02"),
           Observation(None, None, None, None), Observation("64", "x", 3.5, "opts")]
    for o in odd:
        assert guess([o]) is None
    assert guess([None, 5, "x"]) is None
    assert guess([], [None, 5, b"\xff\xfe"]) is None


# --- documented stacks -----------------------------------------------------------------------

def test_linux_with_timestamps():
    g = guess([Observation(61, 65160, 0, opts("mss,sok,ts,nop,ws"), True)])
    assert g == Guess("Linux", "Linux", g.confidence) and g.confidence >= 0.9


def test_linux_without_timestamps():
    g = guess([Observation(60, 64240, 0, opts("mss,nop,nop,sok,nop,ws"), True)])
    assert g.name == "Linux" and g.confidence >= 0.9


def test_windows():
    obs = [Observation(121, 64240, i, opts("mss,nop,ws,nop,nop,sok"), True) for i in counter(31000, 3)]
    g = guess(obs)
    assert g == Guess("Windows", "Windows", g.confidence) and g.confidence >= 0.9


def test_windows_answering_an_mss_only_syn_is_a_modest_guess():
    obs = [Observation(127, 8192, i, opts("mss")) for i in counter(65530, 4)]  # wraps past 0
    g = guess(obs)
    assert g.family == "Windows" and 0.5 <= g.confidence < 0.8


def test_freebsd():
    g = guess([Observation(62, 65535, 0, opts("mss,nop,ws,sok,ts"), True)])
    assert g == Guess("FreeBSD", "BSD", g.confidence) and g.confidence >= 0.9


def test_macos_full_and_cut_to_the_engines_21_bytes():
    full = opts("mss,nop,ws,nop,nop,ts,sok,eol")
    ids = [4711, 39001, 20555]
    for o in (full, full[:21]):
        g = guess([Observation(63, 65535, i, o, True) for i in ids])
        assert g == Guess("macOS", "macOS", g.confidence) and g.confidence >= 0.9


def test_cisco_ios():
    obs = [Observation(254, 4128, i, opts("mss")) for i in counter(1200, 3)]
    g = guess(obs)
    assert g == Guess("Cisco IOS", "Network device", g.confidence) and 0.5 <= g.confidence < 0.8


def test_signature_layouts_follow_each_stacks_option_writer():
    """The table's layouts are what the cited option writers produce for each set of options."""

    def linux(ws, sok, ts):  # tcp_options_write()
        out = ["mss"]
        if ts:
            out += ["sok", "ts"] if sok else ["nop", "nop", "ts"]
        elif sok:
            out += ["nop", "nop", "sok"]
        if ws:
            out += ["nop", "ws"]
        return out

    def freebsd(ws, sok, ts):  # tcp_addoptions(): NOP alignment, then EOL padding
        out, n = ["mss"], 4
        steps = ((ws, "ws", 3, lambda n: n % 2 == 1), (sok, "sok", 2, lambda n: n % 2 == 0),
                 (ts, "ts", 10, lambda n: n % 4 == 2))
        for on, kind, size, aligned in steps:
            if on:
                while not aligned(n):
                    out, n = out + ["nop"], n + 1
                out, n = out + [kind], n + size
        return out + (["eol"] if n % 4 else [])

    def xnu(ws, sok, ts):  # tcp_output(): NOP,WS; NOP,NOP,TS; SACK_PERM last; EOL padding
        out, n = ["mss"], 4
        if ws:
            out, n = out + ["nop", "ws"], n + 4
        if ts:
            out, n = out + ["nop", "nop", "ts"], n + 12
        if sok:
            out, n = out + ["sok"], n + 2
        return out + (["eol"] if n % 4 else [])

    table = {s.name: set(s.layouts) for s in _table()[0]}
    for name, writer in (("Linux", linux), ("FreeBSD", freebsd), ("macOS", xnu)):
        expected = {tuple(writer(*flags)) for flags in itertools.product((False, True), repeat=3)}
        assert table[name] == expected, name


# --- real Linux captures ---------------------------------------------------------------------

def test_captured_linux_defaults_answering_connect_is_linux():
    g = guess([observed(LINUX_CONNECT, hops=3)])
    assert g == Guess("Linux", "Linux", g.confidence) and g.confidence >= 0.9


def test_captured_linux_defaults_answering_the_engines_mss_only_syn_is_a_modest_linux():
    g = guess([observed(LINUX_MSS_ONLY)] * 3)
    assert g.name == "Linux" and 0.5 <= g.confidence < 0.8


def test_captured_linux_with_windows_ttl_and_no_timestamps_is_not_called_windows():
    # TTL 128 says Windows; the option order (NOP,NOP,SACK_PERM,NOP,WS) is Linux's: conflict.
    assert guess([observed(LINUX_TTL128_NOTS_CONNECT)]) is None
    # Answering an MSS-only SYN it has only TTL 128 and window 64240 for Windows, but Windows
    # does not send IP ID 0: no guess rather than a confident "Windows".
    g = guess([observed(LINUX_TTL128_NOTS_MSS_ONLY)] * 3)
    assert g is None or (g.family == "Windows" and g.confidence < 0.7)


def test_ttl_and_window_alone_would_be_only_a_modest_windows():
    o = observed(LINUX_TTL128_NOTS_MSS_ONLY)
    g = guess([Observation(o.ttl, o.win, i, o.opts) for i in (9000,)])
    assert g.family == "Windows" and 0.5 <= g.confidence < 0.7


def test_captured_linux_with_ttl_255_is_unknown():
    assert guess([observed(LINUX_TTL255_CONNECT)]) is None
    assert guess([observed(LINUX_TTL255_MSS_ONLY)] * 3) is None


def test_engine_fingerprints_are_accepted_as_observations():
    o = observed(LINUX_CONNECT)
    fp = Fingerprint(ttl=o.ttl, win=o.win, ipid=o.ipid, opts=o.opts)
    assert guess([fp]) == guess([Observation(o.ttl, o.win, o.ipid, o.opts)])
    assert guess([fp]).name == "Linux"


# --- banners ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("banner", "name"), [
    (DEBIAN_SSH, "Linux (Debian)"), (UBUNTU_SSH, "Linux (Ubuntu)"), (RASPBIAN_SSH, "Linux (Raspbian)"),
    ("Server: Apache/2.4.6 (CentOS) OpenSSL/1.0.2k-fips", "Linux (CentOS)"),
])
def test_distro_banner_refines_linux_and_raises_confidence(banner, name):
    obs = [observed(LINUX_MSS_ONLY)]
    plain = guess(obs)
    g = guess(obs, [PLAIN_HTTP, banner])
    assert g.name == name and g.family == "Linux" and g.confidence > plain.confidence


def test_two_distros_still_say_linux():
    assert guess([observed(LINUX_CONNECT)], [DEBIAN_SSH, UBUNTU_SSH]).name == "Linux"


def test_banner_alone_gives_its_os():
    g = guess([], [DEBIAN_SSH])
    assert g.name == "Linux (Debian)" and 0.5 <= g.confidence < 0.8
    g = guess([], [FREEBSD_SSH])
    assert (g.name, g.family) == ("FreeBSD", "BSD")
    assert guess([], [IIS]).family == "Windows"
    assert guess([], [WINDOWS_SSH]).family == "Windows"


def test_windows_banner_raises_windows_confidence():
    obs = [Observation(127, 8192, i, opts("mss")) for i in counter(100, 3)]
    assert guess(obs, [IIS]).confidence > guess(obs).confidence


def test_banner_contradicting_the_stack_gives_none():
    assert guess([observed(LINUX_CONNECT)], [IIS]) is None
    assert guess([Observation(121, 64240, 5, opts("mss,nop,ws,nop,nop,sok"))], [DEBIAN_SSH]) is None
    # TTL 255 rules Linux out, and the banner rules out everything else
    assert guess([observed(LINUX_TTL255_MSS_ONLY)], [DEBIAN_SSH]) is None


def test_banners_naming_two_families_give_none():
    assert guess([observed(LINUX_CONNECT)], [UBUNTU_SSH, IIS]) is None
    assert guess([], [FREEBSD_SSH, DEBIAN_SSH]) is None


def test_banners_without_an_os_change_nothing():
    obs = [observed(LINUX_MSS_ONLY)]
    assert guess(obs, [PLAIN_HTTP, "220 ProFTPD Server ready.", "SSH-2.0-OpenSSH_9.6"]) == guess(obs)


# --- conflicts and thin evidence -------------------------------------------------------------

def test_replies_with_different_initial_ttls_give_none():
    assert guess([observed(LINUX_CONNECT), observed(LINUX_TTL128_NOTS_CONNECT)]) is None


def test_replies_with_different_option_layouts_give_none():
    a = Observation(64, 65535, 0, opts("mss,nop,ws,sok,ts"))
    b = Observation(64, 65535, 0, opts("mss,sok,ts,nop,ws"))
    assert guess([a, b]) is None


def test_layout_no_stack_writes_gives_none():
    assert guess([Observation(64, 64240, 0, opts("ws,mss,sok"))]) is None
    assert guess([Observation(64, 64240, 0, b"\x1e\x04\x00\x00" + opts("mss"))]) is None  # MPTCP first


def test_thin_evidence_gives_none():
    assert guess([]) is None
    assert guess([Observation(64, 12345, 777, b"")]) is None  # TTL 64 only: Linux? BSD? macOS?
    assert guess([Observation(64, 65535, 0, opts("mss"))]) is None  # FreeBSD or macOS or Linux
    assert guess([Observation(30, 8192, 0, opts("mss"))]) is None  # initial TTL 32: no signature


def test_implausible_hop_counts_do_not_count_as_ttl_evidence():
    # 70 rounds up to 128, 58 hops away: too far to trust the rounding.
    layout = opts("mss,nop,nop,sok,nop,ws")
    far, near = guess([Observation(70, 64240, 0, layout)]), guess([Observation(64, 64240, 0, layout)])
    assert near.name == "Linux"
    assert far is None or (far.name == "Linux" and far.confidence < near.confidence)


def test_df_off_lowers_confidence():
    on = guess([Observation(64, 64240, 0, opts("mss"), True)])
    off = guess([Observation(64, 64240, 0, opts("mss"), False)])
    assert off is None or off.confidence < on.confidence


# --- IP ID behaviour -------------------------------------------------------------------------

@pytest.mark.parametrize(("ids", "behaviour"), [
    ([0], "zero"), ([0, 0, 0], "zero"), ([5], "nonzero"), ([100, 108], "nonzero"),
    ([100, 108, 131], "incremental"), ([65530, 3, 12], "incremental"), ([0, 5], "mixed"),
    ([4711, 39001, 20555], "random"), ([1, 9000, 2], "nonzero"), ([], None),
])
def test_ipid_behaviour(ids, behaviour):
    assert ipid_behaviour(ids) == behaviour


def test_banner_family_against_a_firm_stack_guess_gives_none():
    mac = [Observation(63, 65535, i, opts("mss"), True) for i in (4711, 39001, 20555)]  # random IDs
    assert guess(mac).family == "macOS"
    assert guess(mac, [DEBIAN_SSH]) is None
