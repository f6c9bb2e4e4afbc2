"""The egress guard's rules: which addresses a delivery may not reach, and the allow-list.

Pure: no resolution and no sockets (``hub.transport.egress`` resolves and connects). An
address is refused when it is one of these (from the IANA special-purpose registries; the
tables are written out rather than read from ``ipaddress``'s flags, which differ between
Python versions and call some globally reachable ranges private):

=================  ====================================================================
reason             ranges
=================  ====================================================================
unspecified        0.0.0.0/8 ("this network": 0.0.0.0 reaches the local host), ::/128
loopback           127.0.0.0/8, ::1/128
private            10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7 (unique local),
                   fec0::/10 (site-local), 64:ff9b:1::/48 (local-use NAT64)
carrier-grade NAT  100.64.0.0/10
link-local         169.254.0.0/16 (169.254.169.254 is the cloud metadata service), fe80::/10
multicast          224.0.0.0/4, ff00::/8
reserved           192.0.0.0/24 (IETF protocol assignments), 192.0.2.0/24, 198.51.100.0/24,
                   203.0.113.0/24 (documentation), 192.88.99.0/24 (6to4 relays),
                   198.18.0.0/15 (benchmarking), 240.0.0.0/4 (incl. 255.255.255.255);
                   100::/64 (discard), 2001::/23 (IETF protocol assignments: Teredo,
                   benchmarking, ORCHID), 2001:db8::/32 and 3fff::/20 (documentation), and
                   every IPv6 address outside 2000::/3 (global unicast) not named above
=================  ====================================================================

IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
(``::ffff:a.b.c.d``), 6to4 (2002::/16) and the well-known NAT64 prefix (64:ff9b::/96).
``::ffff:10.0.0.1`` is refused as ``private: IPv4-mapped 10.0.0.1``; ``::ffff:8.8.8.8``
passes. Everything else (public unicast) passes.

``HUB_EGRESS_ALLOW`` lifts the refusal for CIDRs (an address inside one passes, whatever
its class; an IPv6 form passes when the IPv4 address it carries is inside one) and for host
names (``rabbitmq``; ``*.internal`` for every name below ``internal``): every address such
a name resolves to passes.
"""

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    """The ranges, most specific first (2001:db8::/32 is found before 2001::/23)."""
    table = [(ip_network(cidr), reason) for cidr, reason in rows]
    return tuple(sorted(table, key=lambda row: -row[0].prefixlen))


IPV4_REFUSED = _table(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
IPV6_REFUSED = _table(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "reserved"),
    ("3fff::/20", "reserved"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),
    ("ff00::/8", "multicast"),
)
GLOBAL_UNICAST = IPv6Network("2000::/3")
SIX_TO_FOUR = IPv6Network("2002::/16")
NAT64 = IPv6Network("64:ff9b::/96")

LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
ALLOW_HELP = "HUB_EGRESS_ALLOW takes CIDRs and host names, separated by commas or spaces"


class EgressRefused(ValueError):
    """A connection the guard will not make; the message names the address and why."""

    def __init__(self, address: IPAddress, reason: str, host: str) -> None:
        message = f"egress refused: {address} ({reason})"
        if host != str(address):
            message += f" for host {host}"
        super().__init__(message)
        self.address = address
        self.reason = reason
        self.host = host


def embedded_ipv4(address: IPAddress) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 form carries (IPv4-mapped, 6to4, NAT64), with the form."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address in SIX_TO_FOUR and address.sixtofour is not None:
        return "6to4 of", address.sixtofour
    if address in NAT64:
        return "NAT64 of", IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: IPAddress) -> str | None:
    """Why an address (not an IPv6 form of an IPv4 one) is refused; None if it is public."""
    table = IPV4_REFUSED if isinstance(address, IPv4Address) else IPV6_REFUSED
    for network, reason in table:
        if address in network:
            return reason
    if isinstance(address, IPv6Address) and address not in GLOBAL_UNICAST:
        return "reserved"
    return None


def parse_address(text: str) -> IPAddress | None:
    """The address a URL host or a resolver answer spells, or None for a host name."""
    try:
        return ip_address(text.strip("[]"))
    except ValueError:
        return None


def normal_host(host: str) -> str:
    """A host name as the allow-list compares it: lower case, no trailing dot."""
    return host.strip().rstrip(".").lower()


@dataclass(frozen=True)
class EgressPolicy:
    """What HUB_EGRESS_ALLOW lets through; the empty policy refuses every class above."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    """Suffixes from ``*.name`` entries, with their leading dot."""

    @classmethod
    def parse(cls, text: str) -> "EgressPolicy":
        """Read HUB_EGRESS_ALLOW; raise ValueError (one line) on an entry that is neither."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        domains: list[str] = []
        for entry in text.replace(",", " ").split():
            if "/" in entry or ":" in entry or re.fullmatch(r"[0-9.]+", entry):
                networks.append(_network(entry))
            elif entry.startswith("*."):
                domains.append("." + _host_name(entry, entry[2:]))
            else:
                hosts.add(_host_name(entry, entry))
        return cls(tuple(networks), frozenset(hosts), tuple(domains))

    def allows_host(self, host: str) -> bool:
        """Whether a host name is on the allow-list (its addresses all pass)."""
        name = normal_host(host)
        return name in self.hosts or name.endswith(self.domains)

    def refusal(self, address: IPAddress) -> str | None:
        """Why the guard refuses an address under this policy; None when it may connect."""
        if any(address in network for network in self.networks):
            return None
        if carried := embedded_ipv4(address):
            form, ipv4 = carried
            reason = self.refusal(ipv4)
            return f"{reason}: {form} {ipv4}" if reason else None
        return address_class(address)

    def check(self, address: IPAddress, host: str) -> None:
        """Raise EgressRefused unless the policy lets a connection to address through."""
        if reason := self.refusal(address):
            raise EgressRefused(address, reason, host)

    def check_url(self, url: str) -> None:
        """At configuration time: refuse a URL whose host is a literal refused address.

        Host names are not resolved here (what they resolve to at delivery time is what
        counts, and is checked then), so only literal addresses can be refused.
        """
        host = urlsplit(url).hostname or ""
        address = parse_address(host)
        if address is not None:
            self.check(address, host)


def _network(entry: str) -> IPNetwork:
    try:
        return ip_network(entry)
    except ValueError as err:
        raise ValueError(f"not a valid CIDR: {err}; {ALLOW_HELP}") from None


def _host_name(entry: str, name: str) -> str:
    name = normal_host(name)
    labels = name.split(".")
    if len(name) > 253 or not all(LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{entry!r} is neither a CIDR nor a host name; {ALLOW_HELP}")
    return name
