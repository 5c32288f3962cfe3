"""The admin step of the secured stack (docker-compose.secure.yml): topics, then one principal's ACLs per role.

Runs once, as the super user (NEWSDEDUP_KAFKA_SASL_USERNAME=admin and its password, usually through
NEWSDEDUP_KAFKA_SASL_PASSWORD_FILE), with the same NEWSDEDUP_* settings as the roles, so the topic and
group names are theirs. Creating topics or ACLs that exist changes nothing, so it can run on every
`up`. The broker refuses what no ACL allows (allow.everyone.if.no.acl.found=false); no role may create,
delete or reconfigure a topic, read another role's group, or write a topic it does not produce to.

    python deploy/kafka/acls.py            # create what is missing
    python deploy/kafka/acls.py --print    # only list the ACLs (no broker needed)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType

from consumers.kafka_io import client_config, ensure_topics
from consumers.settings import Settings, load_settings

# The SASL user name of each role in docker-compose.secure.yml (demo-producer and scrapers use ingest).
PRINCIPALS = ("ingest", "prepare", "match", "lag-exporter")

Grant = tuple[str, ResourceType, str, ACLOperation]  # principal, resource type, resource name, operation


def role_grants(settings: Settings) -> list[Grant]:
    """What each role's principal may do, and nothing more (README, "Who can do what").

    READ and WRITE imply DESCRIBE. An idempotent producer (every producer of the service) needs no
    IDEMPOTENT_WRITE on the cluster: since Kafka 3.0, WRITE on a topic allows InitProducerId (KIP-679).
    """
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    read, write, describe = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE
    return [
        ("ingest", topic, settings.topic_raw, write),
        ("prepare", topic, settings.topic_raw, read),
        ("prepare", group, settings.prepare_group, read),
        ("prepare", topic, settings.topic_fingerprinted, write),
        ("prepare", topic, settings.topic_dead_letters, write),
        ("match", topic, settings.topic_fingerprinted, read),
        ("match", group, settings.match_group, read),
        ("match", topic, settings.topic_story_events, write),
        ("match", topic, settings.topic_dead_letters, write),
        # Committed offsets (OffsetFetch: DESCRIBE on the group and the topic) and the log ends (ListOffsets).
        ("lag-exporter", group, settings.prepare_group, describe),
        ("lag-exporter", group, settings.match_group, describe),
        ("lag-exporter", topic, settings.topic_raw, describe),
        ("lag-exporter", topic, settings.topic_fingerprinted, describe),
    ]


def acls(settings: Settings) -> list[ACL]:
    return to_acls(role_grants(settings))


def to_acls(grants: Iterable[Grant]) -> list[ACL]:
    return [ACL(principal=f"User:{principal}", host="*", operation=operation,
                permission_type=ACLPermissionType.ALLOW, resource_pattern=ResourcePattern(kind, name))
            for principal, kind, name, operation in grants]


def main(argv: list[str]) -> int:
    settings = load_settings()
    wanted = acls(settings)
    if "--print" in argv:
        for acl in wanted:
            print(f"{acl.principal:20} {acl.operation.name:8} {acl.resource_pattern.resource_type.name:5} "
                  f"{acl.resource_pattern.resource_name}")
        return 0
    created = ensure_topics(settings)
    print(f"topics created: {', '.join(created) or 'none (all exist)'}")
    admin = KafkaAdminClient(**client_config(settings), client_id="newsdedup-acls")
    try:
        result = admin.create_acls(wanted)
    finally:
        admin.close()
    if result["failed"]:
        print(f"acls: {len(result['failed'])} of {len(wanted)} could not be created: {result['failed']}",
              file=sys.stderr)
        return 1
    print(f"acls: {len(wanted)} in place for {', '.join(PRINCIPALS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
