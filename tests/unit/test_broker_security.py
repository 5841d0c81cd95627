"""The roles' ACLs (least privilege) and the secure broker's properties, without a broker."""

from __future__ import annotations

from pathlib import Path

from streams.broker_security import SecureDir, role_acls


def grants(role: str, prefix: str = "p.", app_id: str = "app") -> set[tuple[str, str, str, str]]:
    return {
        (a.resource, a.pattern, a.name, a.operation)
        for a in role_acls(prefix, app_id)
        if a.principal == role
    }


def test_a_carrier_writes_the_inputs_and_nothing_else() -> None:
    carrier = grants("carrier")
    assert {op for *_, op in carrier} == {"write", "describe"}
    assert {name for _, _, name, _ in carrier} == {
        f"p.tracking.{n}" for n in ("registrations", "scans", "handoffs", "customs", "corrections")
    }


def test_downstream_only_reads_the_three_outputs() -> None:
    downstream = grants("downstream")
    assert {op for *_, op in downstream} == {"read", "describe"}
    topics = {name for resource, _, name, _ in downstream if resource == "topic"}
    assert topics == {"p.tracking.parcel-status", "p.tracking.milestones", "p.tracking.alerts"}


def test_the_worker_owns_its_app_topics_and_group_but_reads_no_outputs() -> None:
    worker = grants("worker")
    assert ("topic", "prefixed", "app-", "create") in worker
    assert ("group", "literal", "app", "read") in worker
    assert ("topic", "literal", "p.tracking.parcel-status", "write") in worker
    assert ("topic", "literal", "p.tracking.parcel-status", "read") not in worker
    assert not any(
        op == "create" and name.startswith("p.tracking.scans") for *_, name, op in worker
    )


def test_secure_properties_replace_the_plaintext_listener(tmp_path: Path) -> None:
    secure = SecureDir(tmp_path)
    secure.dir.mkdir()
    (secure.dir / "admin.password").write_text("pw\n")
    secure.internal.write_text('{"store": "s", "controller": "c"}')
    plain = "listeners=PLAINTEXT://127.0.0.1:1\nauto.create.topics.enable=true\nnode.id=1\n"
    text = secure.server_properties(plain, 1, 2)
    assert "PLAINTEXT://" not in text.replace("SASL_PLAINTEXT", "")
    assert "listeners=SASL_SSL://127.0.0.1:1,CONTROLLER://127.0.0.1:2" in text
    assert "allow.everyone.if.no.acl.found=false" in text
    assert "auto.create.topics.enable=false" in text and "node.id=1" in text
