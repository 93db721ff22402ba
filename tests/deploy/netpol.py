"""What Kubernetes NetworkPolicies allow, read from manifests without a cluster.

The subset of the NetworkPolicy semantics (networking.k8s.io/v1) these manifests use: policies
select pods by matchLabels; a pod selected by no policy of a direction is open in that direction,
one selected by any is open only to what some rule allows (rules add up); a peer is a podSelector
(same namespace), a namespaceSelector with an optional podSelector, or an ipBlock with exceptions;
a rule without `from`/`to` admits every peer and one without `ports` every port. A connection
needs the source's egress and the destination's ingress. matchExpressions, named ports and port
ranges are refused rather than guessed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels) or an address outside the cluster (ip only)."""

    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def pod(namespace: str, **labels: str) -> Endpoint:
    return Endpoint(namespace, dict(labels), {"kubernetes.io/metadata.name": namespace})


def address(ip: str) -> Endpoint:
    return Endpoint(ip=ip)


def _matches(selector: dict, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"unsupported selector {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict, policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        inside = ip in ipaddress.ip_network(block["cidr"])
        return inside and not any(ip in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if not other.is_pod:
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return _matches(peer.get("podSelector", {}), other.labels)


def _port_matches(ports: list[dict] | None, port: int, protocol: str) -> bool:
    if ports is None:
        return True
    for entry in ports:
        assert isinstance(entry.get("port"), int) and "endPort" not in entry, f"unsupported port {entry}"
        if entry["port"] == port and entry.get("protocol", "TCP") == protocol:
            return True
    return False


def _direction_allows(
    policies: list[dict], me: Endpoint, other: Endpoint, port: int, protocol: str, direction: str
) -> bool:
    kind, peers_key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    selecting = [
        p for p in policies
        if p["metadata"]["namespace"] == me.namespace and _matches(p["spec"]["podSelector"], me.labels)
        and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]  # fmt: skip
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get(peers_key)
            peer_ok = peers is None or any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(
    policies: list[dict], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Whether a connection from source to target:port is allowed by both ends' policies."""
    egress_ok = not source.is_pod or _direction_allows(policies, source, target, port, protocol, "egress")
    ingress_ok = not target.is_pod or _direction_allows(policies, target, source, port, protocol, "ingress")
    return egress_ok and ingress_ok
